"""docker-compose.yml read against the package: every command exists, every setting is ours."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OUR_SERVICES = {name: s for name, s in COMPOSE["services"].items() if s.get("build")}


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
    environment = COMPOSE["x-settings"]
    postgres = COMPOSE["services"]["postgres"]["environment"]

    match = re.fullmatch(
        r"postgresql://(\w+):(\w+)@postgres:5432/(\w+)", environment["DATABASE_URL"]
    )
    assert match is not None
    assert match.groups() == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"],
    )  # fmt: skip
    assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379/")


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
