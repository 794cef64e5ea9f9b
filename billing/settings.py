"""Every setting the service reads, from the environment or a `.env` file, checked at start-up."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that mean "nobody configured this": refused outside development.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "sk_test_localstripe", "whsec_dev"})
DEV_STRIPE_API_KEY = "sk_test_localstripe"
DEV_STRIPE_PUBLISHABLE_KEY = "pk_test_localstripe"
DEV_WEBHOOK_SECRET = "whsec_dev"  # noqa: S105  (development only; refused elsewhere)
DEV_POSTGRES_PORT = 8432
# Signing secrets shorter than this can be brute-forced offline from one signed link or event;
# Stripe's own webhook secrets are longer (whsec_ + 32 characters).
MIN_SECRET_LENGTH = 32
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


SmtpTls = Literal["none", "starttls", "implicit"]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"

    # The embedded PostgreSQL that `pledges dev` runs (DEV_POSTGRES_PORT) is the default.
    database_url: str = f"postgresql://postgres@127.0.0.1:{DEV_POSTGRES_PORT}/pledges"
    # Production uses Redis; the default needs none: kombu's SQLAlchemy transport on PostgreSQL.
    celery_broker_url: str = (
        f"sqla+postgresql://postgres@127.0.0.1:{DEV_POSTGRES_PORT}/pledges_broker"
    )
    redis_url: str | None = None
    # One deployment's tasks; tests use their own so parallel runs never take each other's work.
    celery_queue: str = "pledges"

    stripe_api_key: SecretStr = SecretStr(DEV_STRIPE_API_KEY)
    stripe_publishable_key: str = DEV_STRIPE_PUBLISHABLE_KEY
    # Comma-separated: during a rotation both the old and the new secret verify.
    stripe_webhook_secret: Annotated[list[SecretStr], NoDecode] = [SecretStr(DEV_WEBHOOK_SECRET)]
    stripe_api_base: str | None = None

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # none | starttls | implicit (SMTP over TLS, usually port 465). Unset: SMTP_STARTTLS decides.
    smtp_tls: SmtpTls | None = None
    # The older spelling of SMTP_TLS=starttls, still honoured.
    smtp_starttls: bool = False
    mail_from: str = "Reader Pledges <pledges@localhost>"

    public_url: str = "http://127.0.0.1:8000"
    widget_origins: Annotated[list[str], NoDecode] = []

    currencies: Annotated[list[str], NoDecode] = ["eur", "usd", "gbp"]
    # Languages readers are served in (widget, pages, mails, statements); each needs a catalog
    # in billing/locales. Any other language, and a disabled one, falls back to English.
    languages: Annotated[list[str], NoDecode] = ["en", "ru", "de"]
    # Minimum and maximum in major units ("2" means 2.00 EUR, 200 JPY would be "200").
    min_amount: int = Field(default=2, ge=1)
    max_amount: int = Field(default=10_000, ge=1)
    # Stripe's standard card pricing, used to show and add the "cover the fee" extra.
    card_fee_basis_points: int = Field(default=290, ge=0, lt=10_000)
    card_fee_fixed_minor: int = Field(default=30, ge=0)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)

    @field_validator("database_url")
    @classmethod
    def _postgresql_only(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in POSTGRES_SCHEMES:
            raise ValueError(
                f"DATABASE_URL must be a postgresql:// URL (PostgreSQL is the only database), "
                f"not {scheme or value[:20]!r}"
            )
        return value

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_driver(cls, value: str) -> str:
        # kombu hands what follows `sqla+` to SQLAlchemy, whose default driver is psycopg 2.
        for scheme in ("sqla+postgresql://", "sqla+postgres://"):
            if value.startswith(scheme):
                return "sqla+postgresql+psycopg://" + value.removeprefix(scheme)
        return value

    @field_validator("smtp_username", "smtp_password", "smtp_tls", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `SMTP_PASSWORD=` in an env file means "no password", not an empty one to log in with.
        return None if value == "" else value

    @property
    def smtp_security(self) -> SmtpTls:
        """How the connection to the relay is protected: SMTP_TLS, else SMTP_STARTTLS."""
        if self.smtp_tls is not None:
            return self.smtp_tls
        return "starttls" if self.smtp_starttls else "none"

    @model_validator(mode="after")
    def _smtp_credentials_only_over_tls(self) -> "Settings":
        if self.smtp_starttls and self.smtp_tls not in (None, "starttls"):
            raise ValueError(
                f"SMTP_STARTTLS=true contradicts SMTP_TLS={self.smtp_tls}; set SMTP_TLS alone"
            )
        if self.smtp_security == "none" and (self.smtp_username or self.smtp_password):
            raise ValueError(
                "SMTP_USERNAME and SMTP_PASSWORD would cross the network in the clear: set "
                "SMTP_TLS=starttls (usually port 587) or SMTP_TLS=implicit (usually port 465)"
            )
        return self

    @field_validator("stripe_webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("widget_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("currencies", mode="before")
    @classmethod
    def _split_currencies(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            return [str(code).lower() for code in value]
        return value

    @field_validator("currencies")
    @classmethod
    def _known_currencies(cls, value: list[str]) -> list[str]:
        from billing.money import CURRENCY_EXPONENTS

        unknown = [code for code in value if code not in CURRENCY_EXPONENTS]
        if unknown:
            raise ValueError(f"unknown currency codes: {', '.join(unknown)}")
        if not value:
            raise ValueError("at least one currency is required")
        return value

    @field_validator("languages", mode="before")
    @classmethod
    def _split_languages(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            return list(dict.fromkeys(str(code).lower() for code in value))
        return value

    @field_validator("languages")
    @classmethod
    def _shipped_languages(cls, value: list[str]) -> list[str]:
        from billing.i18n import SOURCE_LANGUAGE, shipped_languages

        shipped = shipped_languages()
        unknown = [code for code in value if code not in shipped]
        if unknown:
            raise ValueError(
                f"LANGUAGES: no catalog for {', '.join(unknown)} (shipped: {', '.join(shipped)})"
            )
        if SOURCE_LANGUAGE not in value:
            raise ValueError(
                f"LANGUAGES must include {SOURCE_LANGUAGE}: every other falls back to it"
            )
        return value

    @model_validator(mode="after")
    def _no_placeholder_secrets_outside_development(self) -> "Settings":
        if self.min_amount > self.max_amount:
            raise ValueError("MIN_AMOUNT must not be greater than MAX_AMOUNT")
        if self.environment == "development":
            return self
        missing = []
        if self.stripe_api_key.get_secret_value() in PLACEHOLDER_SECRETS:
            missing.append("STRIPE_API_KEY")
        if self.stripe_publishable_key in PLACEHOLDER_SECRETS | {DEV_STRIPE_PUBLISHABLE_KEY}:
            missing.append("STRIPE_PUBLISHABLE_KEY")
        if not self.stripe_webhook_secret or any(
            secret.get_secret_value() in PLACEHOLDER_SECRETS
            for secret in self.stripe_webhook_secret
        ):
            missing.append("STRIPE_WEBHOOK_SECRET")
        if missing:
            raise ValueError(
                f"{', '.join(missing)} must be set to real values when ENVIRONMENT="
                f"{self.environment} (placeholders are only accepted in development)"
            )
        return self

    # Where "a month" and "a day" begin for finance reports (an IANA name such as Europe/Berlin).
    reporting_timezone: str = "UTC"

    @field_validator("reporting_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"REPORTING_TIMEZONE {value!r} is not an IANA time zone") from error
        return value

    # Webhook processing: attempts before an event is left failed for an operator, the first
    # retry delay (doubling each time), and how old an unprocessed event is before the sweep
    # sends it again.
    # Accounts the journal and bank-statement exports book to (names or codes of your chart).
    account_stripe_balance: str = "1210 Stripe balance"
    account_bank: str = "1200 Bank"
    account_donations: str = "4000 Reader gifts"
    account_fees: str = "6100 Payment processing fees"
    account_refunds: str = "4090 Refunds"
    account_disputes: str = "4095 Disputes"
    # Days of Stripe's charges, refunds and disputes the nightly drift check compares.
    drift_check_days: int = Field(default=3, ge=1, le=30)

    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_seconds: float = Field(default=10, ge=0)
    webhook_sweep_after_seconds: int = Field(default=60, ge=0)
    # Events a worker claims and commits together: fewer commits and round trips per event,
    # while a batch's locks (and a crash's rollback) stay small.
    webhook_batch_size: int = Field(default=500, ge=1, le=1000)
    # Where the widget loads Stripe.js; derived from STRIPE_API_BASE (localstripe) when unset.
    stripe_js_url: str | None = None

    # Signs the manage links in readers' emails; changing it invalidates every link sent.
    reader_link_secret: SecretStr = SecretStr("changeme")
    reader_link_max_age_days: int = Field(default=60, ge=1)

    # Abuse defences for the pledge form, in the `limits` notation ("20/hour", "5 per minute").
    rate_limit_per_ip: str = "20/hour"
    rate_limit_per_email: str = "5/hour"
    rate_limit_per_card: str = "5/hour"
    # Declines one IP, email or card may collect; past it that source is refused until the
    # window ends.
    decline_limit: str = "3/hour"
    rate_limit_key_prefix: str = "pledges-limits"
    captcha_provider: Literal["none", "turnstile", "hcaptcha"] = "none"
    captcha_site_key: str | None = None
    captcha_secret: SecretStr | None = None
    # Defaults to the provider's siteverify endpoint.
    captcha_verify_url: str | None = None

    @model_validator(mode="after")
    def _widget_and_abuse_settings(self) -> "Settings":
        from limits import parse

        if not self.stripe_js_url:
            self.stripe_js_url = (
                f"{self.stripe_api_base.rstrip('/')}/js.stripe.com/v3/"
                if self.stripe_api_base
                else "https://js.stripe.com/v3/"
            )
        for name in ("rate_limit_per_ip", "rate_limit_per_email", "rate_limit_per_card",
                     "decline_limit"):  # fmt: skip
            try:
                parse(getattr(self, name))
            except ValueError:
                raise ValueError(f"{name.upper()} must read like '20/hour'") from None
        if self.captcha_provider != "none" and not (self.captcha_site_key and self.captcha_secret):
            raise ValueError("CAPTCHA_SITE_KEY and CAPTCHA_SECRET are required with a captcha")
        if (
            self.environment != "development"
            and self.reader_link_secret.get_secret_value() in PLACEHOLDER_SECRETS
        ):
            raise ValueError(
                "READER_LINK_SECRET must be set to a real value when ENVIRONMENT="
                f"{self.environment} (placeholders are only accepted in development)"
            )
        return self

    @model_validator(mode="after")
    def _long_signing_secrets_outside_development(self) -> "Settings":
        if self.environment == "development":
            return self
        short = []
        if any(len(s.get_secret_value()) < MIN_SECRET_LENGTH for s in self.stripe_webhook_secret):
            short.append("STRIPE_WEBHOOK_SECRET (each one)")
        if len(self.reader_link_secret.get_secret_value()) < MIN_SECRET_LENGTH:
            short.append("READER_LINK_SECRET")
        if short:
            raise ValueError(
                f"{' and '.join(short)} must be at least {MIN_SECRET_LENGTH} characters when "
                f"ENVIRONMENT={self.environment}; generate one with: python -c "
                '"import secrets; print(secrets.token_urlsafe(32))"'
            )
        return self

    # --- Reader emails: the newsroom's identity, links, sending and reminders (issue 4) ---
    newsroom_name: str = "Our Newsroom"
    newsroom_address: str = ""
    # Printed on every receipt, e.g. "VAT ID DE123456789. Donations are not tax-deductible."
    newsroom_legal_line: str = ""
    newsroom_support_email: str | None = None
    newsroom_url: str | None = None
    # A folder whose templates replace the shipped ones of the same name (e.g. en/receipt.html).
    email_templates_dir: Path | None = None
    receipt_number_prefix: str = Field(default="R", max_length=16)
    # Days after the first failed payment for each later reminder; the last is the final notice.
    # Keep the last one inside Stripe's retry window (Billing settings), or it comes too late.
    dunning_schedule_days: Annotated[list[int], NoDecode] = [3, 10]
    # With the backoff below, 20 attempts ride out roughly six hours of SMTP outage; then the
    # mail is marked failed for `pledges outbox list --failed` / `pledges outbox retry`.
    email_max_attempts: int = Field(default=20, ge=1)
    email_retry_base_seconds: float = Field(default=30.0, gt=0)
    # Below the broker's visibility timeout, so a delayed retry is never delivered twice.
    email_retry_max_seconds: float = Field(default=1800.0, gt=0)
    # How long a send may take before another worker may assume it died and send again.
    email_send_lease_seconds: float = Field(default=300.0, gt=0)
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # A private CA that signed the mail relay's certificate (STARTTLS); the system's CAs otherwise.
    smtp_ca_file: Path | None = None

    # --- Annual giving statements (issue 12) ---
    # The legal entity printed on statements; NEWSROOM_NAME when unset.
    newsroom_legal_name: str | None = None
    # Tax or charity registration number printed on statements, e.g. "EIN 12-3456789".
    newsroom_tax_id: str = ""
    # Month-day on which a fiscal year begins in REPORTING_TIMEZONE ("04-06": UK tax year);
    # fiscal year N starts on that day of year N.
    fiscal_year_start: str = "01-01"
    # Month-day on which beat mails last fiscal year's statements; unset (off) by default.
    statements_send_on: str | None = None
    statement_number_prefix: str = Field(default="S", max_length=16)

    @field_validator("fiscal_year_start")
    @classmethod
    def _fiscal_year_start(cls, value: str) -> str:
        from billing.statements.fiscal import parse_month_day

        parse_month_day(value, "FISCAL_YEAR_START")
        return value.strip()

    @field_validator("statements_send_on")
    @classmethod
    def _statements_send_on(cls, value: str | None) -> str | None:
        from billing.statements.fiscal import parse_month_day

        if value is None or not value.strip():
            return None
        parse_month_day(value, "STATEMENTS_SEND_ON")
        return value.strip()

    @field_validator("dunning_schedule_days", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("dunning_schedule_days")
    @classmethod
    def _schedule_increases(cls, value: list[int]) -> list[int]:
        if any(day < 1 for day in value) or value != sorted(set(value)):
            raise ValueError("DUNNING_SCHEDULE_DAYS must be increasing whole days, e.g. 3,10")
        return value

    # --- Outgoing webhooks to the newsroom's own systems (issue 14) ---
    # Where mail about an endpoint that was disabled goes; NEWSROOM_SUPPORT_EMAIL when empty.
    admin_emails: Annotated[list[str], NoDecode] = []
    # Deliveries to loopback, private, link-local or metadata addresses are refused unless true.
    outgoing_webhook_allow_private: bool = False
    # 16 attempts, doubling from 60 s up to 12 h between them: about 3.2 days before giving up.
    outgoing_webhook_max_attempts: int = Field(default=16, ge=1)
    outgoing_webhook_retry_base_seconds: float = Field(default=60.0, gt=0)
    outgoing_webhook_retry_max_seconds: float = Field(default=12 * 3600.0, gt=0)
    # How long a delivery may take before another worker may assume its worker died.
    outgoing_webhook_lease_seconds: float = Field(default=60.0, gt=10)
    # After `endpoints rotate-secret`, the old secret also signs for this long.
    outgoing_webhook_secret_overlap_hours: float = Field(default=24.0, ge=0)

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_admin_emails(cls, value: object) -> object:
        return _split_csv(value)


@lru_cache
def get_settings() -> Settings:
    return Settings()
