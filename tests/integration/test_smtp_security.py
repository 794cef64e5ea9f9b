"""Sending through a relay that demands STARTTLS and a login, as production relays do."""

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.models import EmailOutbox
from billing.settings import get_settings
from tests.conftest import CaughtMail, free_port
from tests.integration.test_reader_emails import deliver_pending
from tests.ledger_rows import make_payment, make_pledge, make_reader


class SecureRelay(CaughtMail):
    """Accepts mail only over TLS from the one user it knows; remembers who logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[str] = []
        self.encrypted: list[bool] = []

    def authenticate(
        self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        accepted = (auth_data.login, auth_data.password) == (b"newsroom", b"s3cret-relay-pass")
        if accepted:
            self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=accepted, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.encrypted.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def relay(
    tmp_path: Path, test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SecureRelay, Callable[[str], None]]]:
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
    caught = SecureRelay()
    port = free_port()
    controller = Controller(
        caught, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
        authenticator=caught.authenticate, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    controller.start()

    def configure(password: str) -> None:
        for name, value in {
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": "true",
            "SMTP_USERNAME": "newsroom", "SMTP_PASSWORD": password, "SMTP_CA_FILE": str(cert),
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    try:
        yield caught, configure
    finally:
        controller.stop()
        monkeypatch.undo()
        get_settings.cache_clear()


def queue_receipt(db: Session) -> None:
    reader = make_reader(db)
    pledge = make_pledge(db, reader)
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)


def test_mail_goes_over_starttls_with_the_configured_login(
    db: Session, relay: tuple[SecureRelay, Callable[[str], None]]
) -> None:
    caught, configure = relay
    configure("s3cret-relay-pass")
    queue_receipt(db)

    assert deliver_pending(db) == ["sent"]
    assert caught.logins == ["newsroom"]
    assert caught.encrypted == [True]


def test_a_refused_login_is_retried_later_and_the_password_is_never_recorded(
    db: Session, relay: tuple[SecureRelay, Callable[[str], None]]
) -> None:
    caught, configure = relay
    configure("an-old-password")
    queue_receipt(db)

    assert deliver_pending(db) == ["retry"]
    row = db.scalars(select(EmailOutbox)).one()
    db.refresh(row)
    assert row.status == "pending" and row.last_error == "SMTP login refused (535)"
    assert caught.messages == []
