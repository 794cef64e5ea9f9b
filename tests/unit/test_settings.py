"""Settings fail fast: placeholders only in development, lists from comma-separated values."""

import pytest
from pydantic import ValidationError

from billing.settings import Settings

WEBHOOK_SECRET = "whsec_abc" + "w" * 32
LINK_SECRET = "links-abc" + "l" * 32
REAL = {
    "stripe_api_key": "sk_live_abc",
    "stripe_publishable_key": "pk_live_abc",
    "stripe_webhook_secret": WEBHOOK_SECRET,
    "reader_link_secret": LINK_SECRET,
}


def test_development_runs_on_the_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)

    settings = Settings(_env_file=None)

    assert settings.environment == "development"
    assert settings.database_url == "postgresql://postgres@127.0.0.1:8432/pledges"
    assert settings.celery_broker_url == (
        "sqla+postgresql+psycopg://postgres@127.0.0.1:8432/pledges_broker"
    )
    assert settings.currencies == ["eur", "usd", "gbp"]


@pytest.mark.parametrize(
    "url",
    ["postgresql://db.internal/pledges", "postgres://u:p@db/pledges",
     "postgresql+psycopg://127.0.0.1/pledges"],
)  # fmt: skip
def test_database_url_takes_postgresql_urls(url: str) -> None:
    assert Settings(_env_file=None, database_url=url).database_url == url


@pytest.mark.parametrize("url", ["sqlite:///./.pledges/pledges.db", "mysql://db/pledges", "db"])
def test_database_url_refuses_other_databases(url: str) -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL must be a postgresql:// URL"):
        Settings(_env_file=None, database_url=url)


@pytest.mark.parametrize(
    "missing",
    ["stripe_api_key", "stripe_publishable_key", "stripe_webhook_secret", "reader_link_secret"],
)
def test_production_refuses_placeholder_secrets(missing: str) -> None:
    values = {**REAL, missing: ""}

    with pytest.raises(ValidationError, match=missing.upper()):
        Settings(_env_file=None, environment="production", **values)


def test_comma_separated_values_become_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = "whsec_old" + "o" * 32, "whsec_new" + "n" * 32
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{old}, {new}")
    monkeypatch.setenv("WIDGET_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("CURRENCIES", "EUR,sek")

    settings = Settings(
        _env_file=None, environment="production", stripe_api_key="sk_live_x",
        stripe_publishable_key="pk_live_x", reader_link_secret=LINK_SECRET,
    )  # fmt: skip

    assert [s.get_secret_value() for s in settings.stripe_webhook_secret] == [old, new]
    assert settings.widget_origins == ["https://a.example", "https://b.example"]
    assert settings.currencies == ["eur", "sek"]


def test_unknown_currency_code_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="unknown currency codes: xyz"):
        Settings(_env_file=None, currencies="eur,xyz")


def test_secrets_do_not_show_in_the_settings_repr() -> None:
    settings = Settings(_env_file=None, environment="production", **REAL)

    assert "sk_live_abc" not in repr(settings) and WEBHOOK_SECRET not in repr(settings)
    assert LINK_SECRET not in repr(settings)


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("reader_link_secret", "r" * 31),
        ("stripe_webhook_secret", "whsec_" + "w" * 25),
        # During a rotation each secret counts: a long new one does not excuse a short old one.
        ("stripe_webhook_secret", f"{WEBHOOK_SECRET},whsec_short"),
    ],
)
def test_signing_secrets_shorter_than_32_characters_are_refused_outside_development(
    environment: str, setting: str, value: str
) -> None:
    with pytest.raises(ValidationError, match=f"{setting.upper()}.* at least 32 characters"):
        Settings(_env_file=None, environment=environment, **{**REAL, setting: value})


def test_signing_secrets_of_32_characters_are_accepted() -> None:
    settings = Settings(
        _env_file=None, environment="production",
        **{**REAL, "reader_link_secret": "r" * 32, "stripe_webhook_secret": "w" * 32},
    )  # fmt: skip

    assert len(settings.reader_link_secret.get_secret_value()) == 32


def test_development_accepts_its_short_placeholders() -> None:
    settings = Settings(_env_file=None, environment="development", reader_link_secret="changeme")

    assert settings.reader_link_secret.get_secret_value() == "changeme"
