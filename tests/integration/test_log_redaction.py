"""No token, key or secret in any log line: our JSON logs and uvicorn's access log alike."""

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from billing.dev import wait_for_port
from billing.logs import RedactSecrets, redact
from billing.models import Pledge
from billing.reader_links import manage_token
from tests.conftest import free_port
from tests.ledger_rows import make_pledge, make_reader

API_KEY = "rp_" + "k" * 43
STRIPE_KEY = "sk_live_" + "s" * 24
CLIENT_SECRET = "seti_1AbC_secret_" + "c" * 24


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        ("/manage/eyJhbGciOi.abc-def_123/card", "eyJhbGciOi.abc-def_123", "/manage/[token]/card"),
        ("https://p.example/manage/tok.en?done=cancel", "tok.en", "/manage/[token]?done=cancel"),
        ("/v1/thing?token=abc123&format=csv", "abc123", "format=csv"),
        ("/callback?api_key=abc123", "abc123", "api_key=[redacted]"),
        ("Authorization: Bearer " + API_KEY, API_KEY, "Authorization: [redacted]"),
        ("sent Bearer " + API_KEY + " to reports", API_KEY, "Bearer [redacted] to reports"),
        ("Stripe-Signature: t=1700000000,v1=" + "ab" * 32, "ab" * 32, "Stripe-Signature:"),
        ("header t=1700000000,v1=" + "ab" * 32, "ab" * 32, "v1=[redacted]"),
        ("Invalid API Key provided: " + STRIPE_KEY, STRIPE_KEY, "sk_live_[redacted]"),
        ("secret whsec_" + "w" * 32, "w" * 32, "whsec_[redacted]"),
        ("endpoint secret whsec_ab+/cd" + "w" * 30 + "==", "w" * 30, "whsec_[redacted]"),
        ("intent " + CLIENT_SECRET, "c" * 24, "seti_1AbC_secret_[redacted]"),
        ("key " + API_KEY, API_KEY, "rp_[redacted]"),
    ],
)
def test_redact_removes_each_kind_of_secret(line: str, secret: str, kept: str) -> None:
    redacted = redact(line)

    assert secret not in redacted
    assert kept in redacted


@pytest.mark.parametrize(
    "line",
    ["/manage/link", "/manage", "/v1/reports/pledges?format=csv&cursor=abc", "pi_123 in_456"],
)
def test_redact_keeps_what_names_no_secret(line: str) -> None:
    assert redact(line) == line


def test_uvicorn_access_record_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    token = "eyJ0b2tlbiI6MX0.Zx-abc"
    access = logging.getLogger("test.uvicorn.access")
    access.addFilter(RedactSecrets())
    with caplog.at_level(logging.INFO, logger=access.name):
        # The shape uvicorn logs each request in.
        access.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
            f"/manage/{token}/export?key={token}", "1.1", 200,
        )  # fmt: skip

    assert token not in caplog.text
    assert "/manage/[token]/export?key=[redacted]" in caplog.text


@pytest.fixture
def stripe_unreachable(
    test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Settings whose Stripe is a port nothing listens on."""
    from billing.db import reset_caches
    from billing.stripe_gateway import get_gateway

    env = {**test_environment, "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}"}
    monkeypatch.setenv("STRIPE_API_BASE", env["STRIPE_API_BASE"])
    reset_caches()
    get_gateway.cache_clear()
    yield env
    monkeypatch.undo()
    reset_caches()
    get_gateway.cache_clear()


@pytest.fixture
def pledge(db: Session) -> Pledge:
    pledge = make_pledge(db, make_reader(db, email="private@example.org"))
    db.commit()
    return pledge


def test_failing_manage_request_logs_no_token(
    stripe_unreachable: dict[str, str],
    pledge: Pledge,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = manage_token(pledge.id)

    response = client.post(
        f"/manage/{token}/card",
        json={"payment_method": "pm_card_visa"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )

    assert response.status_code == 503
    output = capsys.readouterr().out
    assert '"stripe_unavailable"' in output and "/manage/[token]/card" in output
    assert token not in output and API_KEY not in output


def test_pledges_serve_logs_no_token_in_access_or_error_lines(
    stripe_unreachable: dict[str, str], pledge: Pledge, tmp_path: Path
) -> None:
    token = manage_token(pledge.id)
    port = free_port()
    log_file = tmp_path / "serve.log"
    with log_file.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "billing.cli", "serve", "--port", str(port)],
            env={**os.environ, **stripe_unreachable}, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_port(port)
            base = f"http://127.0.0.1:{port}"
            card = httpx.post(
                f"{base}/manage/{token}/card", json={"payment_method": "pm_card_visa"}, timeout=30
            )
            page = httpx.get(f"{base}/manage/{token}?token={token}", timeout=30)
            reports = httpx.get(
                f"{base}/v1/reports/summary", headers={"Authorization": f"Bearer {API_KEY}"}
            )
            time.sleep(0.5)  # uvicorn writes the access line after the answer
        finally:
            server.terminate()
            server.wait(timeout=15)

    assert (card.status_code, page.status_code, reports.status_code) == (503, 200, 401)
    output = log_file.read_text()
    assert '"stripe_unavailable"' in output
    assert output.count("/manage/[token]") >= 3  # the error line and two access lines
    assert token not in output and API_KEY not in output


def test_libraries_log_their_warnings_but_not_every_request_to_stripe() -> None:
    from billing.logs import configure_logging

    configure_logging()

    for name in ("stripe", "httpx", "httpcore"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
        assert logging.getLogger(name).isEnabledFor(logging.WARNING)
