"""Signed Stripe events for tests, built from Stripe's own fixtures in the current API shape."""

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

import webhooks
from billing.models import Pledge, Reader, StripeEvent
from billing.stripe_gateway import API_VERSION
from tests.conftest import WEBHOOK_SECRET
from webhooks.signature import sign

FIXTURES: dict[str, Any] = json.loads(
    (Path(webhooks.__file__).parent / "stripe_objects.json").read_text()
)["resources"]
NOW = int(time.time())
DAY = 86_400


def fixture(kind: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(FIXTURES[kind])
    document.update(overrides)
    return document


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def event(
    kind: str, stripe_object: dict[str, Any], *, created: int | None = None, **overrides: Any
) -> dict[str, Any]:
    document = fixture(
        "event",
        id=new_id("evt"),
        type=kind,
        created=created or int(time.time()),
        api_version=API_VERSION,
        data={"object": stripe_object},
    )
    document.update(overrides)
    return document


def subscription(
    subscription_id: str,
    customer_id: str,
    *,
    status: str = "active",
    amount: int = 500,
    currency: str = "eur",
    interval: str = "month",
    period_end: int = NOW + 30 * DAY,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    document = fixture(
        "subscription",
        id=subscription_id, customer=customer_id, status=status, currency=currency,
        metadata=metadata or {}, created=NOW - DAY, start_date=NOW - DAY,
        cancel_at=None, canceled_at=NOW if status == "canceled" else None,
        ended_at=NOW if status == "canceled" else None, cancel_at_period_end=False,
        trial_end=None, trial_start=None, pause_collection=None, pending_update=None,
    )  # fmt: skip
    item = document["items"]["data"][0]
    item["subscription"] = subscription_id
    item["current_period_start"], item["current_period_end"] = period_end - 30 * DAY, period_end
    item["price"].update(unit_amount=amount, unit_amount_decimal=str(amount), currency=currency)
    item["price"]["recurring"]["interval"] = interval
    return document


def invoice(
    invoice_id: str,
    subscription_id: str | None,
    customer_id: str,
    *,
    amount: int = 500,
    currency: str = "eur",
    status: str = "paid",
    attempt_count: int = 1,
    next_payment_attempt: int | None = None,
    period_start: int = NOW,
) -> dict[str, Any]:
    paid = status == "paid"
    document = fixture(
        "invoice",
        id=invoice_id, customer=customer_id, currency=currency, status=status,
        amount_due=amount, amount_paid=amount if paid else 0,
        amount_remaining=0 if paid else amount, attempt_count=attempt_count, attempted=True,
        next_payment_attempt=next_payment_attempt, billing_reason="subscription_cycle",
        subtotal=amount, total=amount, amount_overpaid=0, last_finalization_error=None,
        status_transitions={
            "finalized_at": period_start, "marked_uncollectible_at": None,
            "paid_at": period_start + 60 if paid else None, "voided_at": None,
        },
        parent={
            "type": "subscription_details", "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription_id},
        } if subscription_id else None,
    )  # fmt: skip
    line = document["lines"]["data"][0]
    line.update(amount=amount, currency=currency, invoice=invoice_id, subtotal=amount)
    line["period"] = {"start": period_start, "end": period_start + 30 * DAY}
    return document


def signed_headers(
    body: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None
) -> dict[str, str]:
    return {
        "Stripe-Signature": sign(body, secret, at or int(time.time())),
        "Content-Type": "application/json",
    }


def post_event(client: TestClient, document: dict[str, Any]) -> Response:
    body = orjson.dumps(document)
    return client.post("/webhooks/stripe", content=body, headers=signed_headers(body))


def stored_event(db: Session, stripe_event_id: str) -> StripeEvent:
    db.expire_all()
    return db.scalars(
        select(StripeEvent).where(StripeEvent.stripe_event_id == stripe_event_id)
    ).one()


def make_pledge(
    db: Session,
    *,
    subscription_id: str | None = None,
    customer_id: str | None = None,
    status: str = "active",
    amount: int = 500,
    currency: str = "eur",
    interval: str = "month",
    email: str | None = None,
) -> Pledge:
    """A reader and a pledge as the confirm flow leaves them, committed."""
    customer_id = customer_id or new_id("cus")
    reader = Reader(
        id=uuid.uuid4(), email=email or f"{uuid.uuid4().hex[:8]}@example.org",
        stripe_customer_id=customer_id,
    )  # fmt: skip
    pledge = Pledge(
        id=uuid.uuid4(), reader_id=reader.id, amount_minor=amount, currency=currency,
        interval=interval, status=status, stripe_customer_id=customer_id,
        stripe_subscription_id=subscription_id if interval != "once" else None,
    )  # fmt: skip
    db.add(reader)
    db.flush()
    db.add(pledge)
    db.commit()
    return pledge


def deliver(client: TestClient, db: Session, document: dict[str, Any]) -> StripeEvent:
    """Post the signed event, then run its processing here instead of in a worker."""
    from webhooks.processing import process

    response = post_event(client, document)
    assert response.status_code == 200, response.text
    process(stored_event(db, document["id"]).id)
    return stored_event(db, document["id"])


def dashboard_subscription(
    stripe_api: httpx.Client, email: str, amount: int = 900
) -> tuple[str, str]:
    """A subscription made outside this service (the dashboard, an earlier system)."""
    customer = stripe_api.post("/v1/customers", data={"email": email, "name": "Dash"}).json()
    stripe_api.post(
        "/v1/payment_methods/pm_card_visa/attach", data={"customer": customer["id"]}
    ).raise_for_status()
    stripe_api.post(
        f"/v1/customers/{customer['id']}",
        data={"invoice_settings[default_payment_method]": "pm_card_visa"},
    ).raise_for_status()
    plan_id = f"dash-{uuid.uuid4().hex[:8]}"
    stripe_api.post(
        "/v1/plans",
        data={"id": plan_id, "amount": amount, "currency": "eur", "interval": "month",
              "product[name]": "Membership"},
    ).raise_for_status()  # fmt: skip
    created = stripe_api.post(
        "/v1/subscriptions", data={"customer": customer["id"], "items[0][plan]": plan_id}
    )
    created.raise_for_status()
    return str(created.json()["id"]), str(customer["id"])
