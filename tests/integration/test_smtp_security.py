"""Sending through relays that demand TLS and a login, as production relays do; the password
never crosses the network in the clear."""

import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.models import EmailOutbox
from billing.settings import Settings, get_settings
from tests.conftest import CaughtMail, free_port
from tests.integration.test_reader_emails import deliver_pending
from tests.ledger_rows import make_payment, make_pledge, make_reader


class SecureRelay(CaughtMail):
    """Accepts mail only from the one user it knows; remembers who logged in, and whether each
    login and each message came over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[str] = []
        self.passwords_seen: list[tuple[bytes, bool]] = []
        self.encrypted: list[bool] = []

    def authenticate(
        self, server: Any, session: Any, _envelope: Any, _mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.passwords_seen.append((auth_data.password, _over_tls(server, session)))
        accepted = (auth_data.login, auth_data.password) == (b"newsroom", b"s3cret-relay-pass")
        if accepted:
            self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=accepted, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.encrypted.append(_over_tls(server, session))
        return await super().handle_DATA(server, session, envelope)


def _over_tls(server: Any, session: Any) -> bool:
    # STARTTLS shows in the session; implicit TLS only in the transport under it.
    implicit = server.transport is not None and server.transport.get_extra_info("ssl_object")
    return session.ssl is not None or bool(implicit)


Relay = Literal["starttls", "implicit", "plain"]
StartRelay = Callable[[Relay, dict[str, str]], SecureRelay]


@pytest.fixture
def start_relay(
    tmp_path: Path, test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[StartRelay]:
    """Start a relay that speaks STARTTLS, implicit TLS, or plain SMTP only (as a network that
    strips STARTTLS would make any relay look), and point our settings at it."""
    import ssl

    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    controllers: list[Controller] = []

    def start(kind: Relay, settings: dict[str, str]) -> SecureRelay:
        caught = SecureRelay()
        port = free_port()
        by_kind: dict[str, dict[str, Any]] = {
            "starttls": {"tls_context": tls, "require_starttls": True, "auth_require_tls": True},
            "implicit": {"ssl_context": tls, "auth_require_tls": False},
            "plain": {"auth_require_tls": False},
        }
        # The plain and implicit relays take AUTH without STARTTLS, on purpose.
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        controller = Controller(
            caught, hostname="127.0.0.1", port=port, authenticator=caught.authenticate,
            auth_required=True, **by_kind[kind],
        )  # fmt: skip
        controller.start()
        controllers.append(controller)
        for name, value in {
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_USERNAME": "newsroom",
            "SMTP_CA_FILE": str(cert), **settings,
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return caught

    try:
        yield start
    finally:
        for controller in controllers:
            controller.stop()
        monkeypatch.undo()
        get_settings.cache_clear()


def queue_receipt(db: Session) -> None:
    reader = make_reader(db)
    pledge = make_pledge(db, reader)
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)


PASSWORD = "s3cret-relay-pass"


def test_a_refused_login_is_retried_later_and_the_password_is_never_recorded(
    db: Session, start_relay: StartRelay
) -> None:
    caught = start_relay("starttls", {"SMTP_TLS": "starttls", "SMTP_PASSWORD": "an-old-password"})
    queue_receipt(db)

    assert deliver_pending(db) == ["retry"]
    row = db.scalars(select(EmailOutbox)).one()
    db.refresh(row)
    assert row.status == "pending" and row.last_error == "SMTP login refused (535)"
    assert caught.messages == []


@pytest.mark.parametrize(
    ("relay_kind", "settings"),
    [
        ("starttls", {"SMTP_TLS": "starttls"}),
        ("starttls", {"SMTP_STARTTLS": "true"}),
        ("implicit", {"SMTP_TLS": "implicit"}),
    ],
    ids=["SMTP_TLS=starttls", "SMTP_STARTTLS=true", "SMTP_TLS=implicit"],
)
def test_mail_and_login_go_over_tls_in_each_mode(
    db: Session, start_relay: StartRelay, relay_kind: Relay, settings: dict[str, str]
) -> None:
    caught = start_relay(relay_kind, {**settings, "SMTP_PASSWORD": PASSWORD})
    queue_receipt(db)

    assert deliver_pending(db) == ["sent"]
    assert caught.logins == ["newsroom"]
    assert caught.passwords_seen == [(PASSWORD.encode(), True)]
    assert caught.encrypted == [True]


def test_a_relay_without_starttls_never_receives_the_password(
    db: Session, start_relay: StartRelay
) -> None:
    # What a network that strips STARTTLS from the relay's greeting looks like to us.
    caught = start_relay("plain", {"SMTP_TLS": "starttls", "SMTP_PASSWORD": PASSWORD})
    queue_receipt(db)

    assert deliver_pending(db) == ["retry"]
    assert caught.passwords_seen == [] and caught.messages == []


@pytest.mark.parametrize(
    "settings",
    [
        {"smtp_username": "newsroom", "smtp_password": PASSWORD},
        {"smtp_username": "newsroom", "smtp_password": PASSWORD, "smtp_tls": "none"},
        {"smtp_password": PASSWORD, "smtp_starttls": False},
    ],
    ids=["defaults", "SMTP_TLS=none", "SMTP_STARTTLS=false"],
)
def test_smtp_credentials_without_tls_are_refused_at_start_up(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"SMTP_TLS=starttls .* SMTP_TLS=implicit"):
        Settings(_env_file=None, **settings)


def test_smtp_starttls_contradicting_smtp_tls_is_refused() -> None:
    with pytest.raises(ValidationError, match="SMTP_STARTTLS=true contradicts SMTP_TLS=none"):
        Settings(_env_file=None, smtp_starttls=True, smtp_tls="none")


def test_smtp_tls_modes_and_the_older_spelling() -> None:
    assert Settings(_env_file=None).smtp_security == "none"
    assert Settings(_env_file=None, smtp_starttls=True).smtp_security == "starttls"
    assert Settings(_env_file=None, smtp_tls="implicit").smtp_security == "implicit"
    with pytest.raises(ValidationError, match="smtp_tls"):
        Settings(_env_file=None, smtp_tls="ssl")
