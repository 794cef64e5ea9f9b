"""docker-compose.yml read against the package: every command exists, every setting is ours,
and it is production-safe unless local.env says otherwise."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from billing.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
OUR_SERVICES = {name: s for name, s in COMPOSE["services"].items() if s.get("build")}
# Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}.
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRETS = ("POSTGRES_PASSWORD", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "READER_LINK_SECRET")
PRODUCTION = {
    "POSTGRES_PASSWORD": "p" * 32,
    "STRIPE_API_KEY": "sk_live_" + "k" * 24,
    "STRIPE_PUBLISHABLE_KEY": "pk_live_" + "k" * 24,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "w" * 32,
    "READER_LINK_SECRET": "r" * 43,
    "SMTP_HOST": "smtp.newsroom.example",
    "SMTP_USERNAME": "pledges",
    "SMTP_PASSWORD": "relay-password",
    "MAIL_FROM": "Bugle <pledges@bugle.example>",
    "PUBLIC_URL": "https://pledges.bugle.example",
    "WIDGET_ORIGINS": "https://bugle.example",
}


class ComposeRefuses(Exception):
    """What `docker compose up` prints before refusing to start."""


def interpolate(value: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env
        filled = present and env[name] != ""
        if op in (":?", "?") and not (filled if op == ":?" else present):
            raise ComposeRefuses(f"{name}: {arg}")
        if (op == ":-" and not filled) or (op == "-" and not present):
            return str(arg)
        return env.get(name, "")

    return VARIABLE.sub(one, value)


def resolved_settings(env: dict[str, str]) -> dict[str, str]:
    """The environment our services get: a key without a value passes the shell's through."""
    resolved = {}
    for name, value in COMPOSE["x-settings"].items():
        if value is None:
            if name in env:
                resolved[name] = env[name]
        else:
            resolved[name] = interpolate(str(value), env)
    return resolved


def local_env() -> dict[str, str]:
    lines = (ROOT / "local.env").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): value for name, value in pairs}


def settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_the_stack_has_every_service_the_design_names() -> None:
    assert {"api", "worker", "beat", "postgres", "redis"} <= set(COMPOSE["services"])
    local = {n for n, s in COMPOSE["services"].items() if "local" in s.get("profiles", [])}
    assert local == {"localstripe", "mailcatcher"}


@pytest.mark.parametrize("name", sorted(OUR_SERVICES))
def test_each_service_command_exists_in_the_package(name: str) -> None:
    command: list[str] = OUR_SERVICES[name]["command"]
    if command[0] == "pledges":
        # `--help` on the exact subcommand path proves typer knows it and its options parse.
        subcommand = [part for part in command[1:] if not part.startswith("-")][:2]
        result = subprocess.run(
            [sys.executable, "-m", "billing.cli", *subcommand, "--help"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        for option in (part.split("=")[0] for part in command if part.startswith("--")):
            assert option in result.stdout, f"{name}: {option} is not an option of {subcommand}"
    else:
        assert command[:2] == ["python", "-m"]
        assert importlib.util.find_spec(command[2]) is not None


def test_every_setting_given_to_our_services_is_one_the_app_reads() -> None:
    environment: dict[str, Any] = COMPOSE["x-settings"]
    known = {name.upper() for name in Settings.model_fields}

    assert set(environment) <= known
    for service in OUR_SERVICES.values():
        assert service["environment"] == environment


def test_the_services_reach_postgres_and_redis_by_their_compose_names() -> None:
    environment = resolved_settings(PRODUCTION)
    postgres = {
        name: interpolate(value, PRODUCTION)
        for name, value in COMPOSE["services"]["postgres"]["environment"].items()
    }

    match = re.fullmatch(
        r"postgresql://(\w+):(\w+)@postgres:5432/(\w+)", environment["DATABASE_URL"]
    )
    assert match is not None
    assert match.groups() == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"],
    )  # fmt: skip
    assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379/")


def test_compose_runs_in_production_and_refuses_short_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(resolved_settings(PRODUCTION), monkeypatch)

    assert settings.environment == "production"
    assert settings.stripe_api_base in (None, "")
    assert settings.stripe_js_url == "https://js.stripe.com/v3/"
    assert settings.smtp_security == "starttls" and settings.smtp_password is not None
    short = {**PRODUCTION, "READER_LINK_SECRET": "too-short"}
    with pytest.raises(ValidationError, match="READER_LINK_SECRET must be at least 32"):
        settings_from(resolved_settings(short), monkeypatch)


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_start_without_each_secret(secret: str) -> None:
    for missing in ({}, {secret: ""}):
        env = {**{k: v for k, v in PRODUCTION.items() if k != secret}, **missing}
        with pytest.raises(ComposeRefuses, match=secret):
            resolved_settings(env)


def test_no_secret_or_key_has_a_default_value() -> None:
    for match in VARIABLE.finditer(COMPOSE_TEXT):
        if re.search(r"SECRET|KEY|PASSWORD|TOKEN", match["name"]):
            assert match["op"] == ":?", f"{match[0]} must be ${{{match['name']}:?message}}"
    for name, value in COMPOSE["x-settings"].items():
        if re.search(r"SECRET|KEY|PASSWORD", name) and value is not None:
            assert VARIABLE.fullmatch(str(value)), f"{name} is written into the file"


def test_local_env_runs_the_local_profile_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    env = local_env()
    settings = settings_from(resolved_settings(env), monkeypatch)

    assert settings.environment == "development"
    assert settings.stripe_api_base == "http://localstripe:8420"
    assert settings.smtp_host == "mailcatcher"
    local = {n for n, s in COMPOSE["services"].items() if "local" in s.get("profiles", [])}
    assert {"localstripe", "mailcatcher"} <= local


def test_services_that_others_wait_for_have_healthchecks() -> None:
    for name in ("postgres", "redis", "api"):
        assert "healthcheck" in COMPOSE["services"][name], name
    assert COMPOSE["services"]["api"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


def test_the_image_installs_what_the_services_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    for package in ("billing", "webhooks", "workers"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "constraints.txt" in dockerfile and (ROOT / "constraints.txt").exists()
    # The catalogs' .mo files are not in git; the image compiles them before installing.
    assert "pybabel compile -D messages -d billing/locales" in dockerfile
