"""End to end: localstripe signs and sends its webhooks to a real API process, a real worker
applies them, and the ledger ends up holding what localstripe holds."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.dev import wait_for_port
from billing.models import Payment, Pledge, StripeEvent
from tests.conftest import REDIS_URL, WEBHOOK_SECRET, BrowserStripe, free_port


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def api_process(test_environment: dict[str, str]) -> Iterator[str]:
    """`pledges serve` on a free port, where localstripe delivers its webhooks."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--port", str(port)],
        env={**os.environ, **test_environment},
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def localstripe_webhook(api_process: str, test_environment: dict[str, str]) -> Iterator[None]:
    hook_id = f"e2e-{uuid.uuid4().hex[:8]}"
    base = test_environment["STRIPE_API_BASE"]
    url = f"{api_process}/webhooks/stripe"
    httpx.post(f"{base}/_config/webhooks/{hook_id}", data={"url": url, "secret": WEBHOOK_SECRET})
    yield
    # localstripe cannot forget a webhook: point it at events nothing sends.
    httpx.post(
        f"{base}/_config/webhooks/{hook_id}",
        data={"url": url, "secret": WEBHOOK_SECRET, "events[]": ["none.ever"]},
    )


@pytest.fixture
def empty_queue(test_environment: dict[str, str]) -> None:
    redis.Redis.from_url(REDIS_URL).delete(test_environment["CELERY_QUEUE"])


def ledger_payments(db: Session, pledge_id: uuid.UUID) -> dict[str, tuple[str, int]]:
    db.expire_all()
    rows = db.scalars(select(Payment).where(Payment.pledge_id == pledge_id))
    return {str(p.stripe_invoice_id): (p.status, p.amount_minor) for p in rows}


def stripe_paid_invoices(
    stripe_api: httpx.Client, subscription_id: str
) -> dict[str, tuple[str, int]]:
    invoices = stripe_api.get("/v1/invoices", params={"subscription": subscription_id}).json()
    return {
        invoice["id"]: ("paid", invoice["amount_paid"])
        for invoice in invoices["data"]
        if invoice["status"] == "paid"
    }


def test_pledge_renewal_and_cancel_in_localstripe_land_in_the_ledger(
    empty_queue: None,
    localstripe_webhook: None,
    celery_worker_process: subprocess.Popen[bytes],
    client: TestClient,
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
) -> None:
    created = client.post(
        "/v1/pledges",
        json={"email": "e2e@example.org", "amount": 700, "currency": "eur", "interval": "month"},
    ).json()
    card = {"payment_method": browser_stripe.create_payment_method("4242424242424242")}
    confirmed = client.post(f"/v1/pledges/{created['id']}/confirm", json=card)
    assert confirmed.json()["status"] == "active"
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.stripe_subscription_id is not None
    subscription_id, customer_id = pledge.stripe_subscription_id, pledge.stripe_customer_id

    wait_until(lambda: len(ledger_payments(db, pledge.id)) == 1, what="the first payment")

    # A renewal: localstripe does not renew by itself, so bill the next month by hand.
    renewal = stripe_api.post(
        "/v1/invoices", data={"customer": customer_id, "subscription": subscription_id}
    ).json()
    stripe_api.post(f"/v1/invoices/{renewal['id']}/pay").raise_for_status()
    wait_until(lambda: len(ledger_payments(db, pledge.id)) == 2, what="the renewal")

    stripe_api.delete(f"/v1/subscriptions/{subscription_id}").raise_for_status()

    def canceled() -> bool:
        db.expire_all()
        return db.get(Pledge, pledge.id).status == "canceled"  # type: ignore[union-attr]

    wait_until(canceled, what="the cancellation")
    assert ledger_payments(db, pledge.id) == stripe_paid_invoices(stripe_api, subscription_id)
    assert sorted(amount for _, amount in ledger_payments(db, pledge.id).values()) == [700, 700]
    db.expire_all()
    settled = db.scalars(select(Payment).where(Payment.pledge_id == pledge.id)).all()
    # Fee and net come from each charge's balance transaction (localstripe charges no fee).
    assert [(p.fee_minor, p.net_minor) for p in settled] == [(0, 700), (0, 700)]
    assert all(p.stripe_charge_id for p in settled)
    subscription = stripe_api.get(f"/v1/subscriptions/{subscription_id}").json()
    assert subscription["status"] == "canceled"
    db.expire_all()
    failed = db.scalars(select(StripeEvent).where(StripeEvent.status == "failed")).all()
    assert failed == []
