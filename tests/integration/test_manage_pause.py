"""Pausing for a month: localstripe has no pause_collection, so a current-shape Stripe answers."""

import copy
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import EmailOutbox, Pledge, Reader
from billing.reader_links import manage_token
from billing.settings import Settings
from billing.stripe_gateway import API_VERSION, StripeGateway, get_gateway
from tests.integration.test_gateway_current_stripe import FIXTURES
from tests.local_http import serving_locally


class PausableStripe:
    """Answers a subscription update with Stripe's own subscription fixture, and records it."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict[str, str], dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST" and request.path == "/v1/subscriptions/sub_paused":
            form = {key: str(value) for key, value in (await request.post()).items()}
            self.updates.append((request.path, form, dict(request.headers)))
            subscription = copy.deepcopy(FIXTURES["subscription"])
            subscription.update(
                id="sub_paused",
                pause_collection={
                    "behavior": form.get("pause_collection[behavior]"),
                    "resumes_at": int(form.get("pause_collection[resumes_at]", "0")),
                },
            )
            return web.json_response(subscription)
        body = {"error": {"type": "invalid_request_error", "message": "unexpected request"}}
        return web.json_response(body, status=404)


@pytest.fixture
def pausable(client: TestClient) -> Iterator[PausableStripe]:
    stripe = PausableStripe()
    with serving_locally(stripe.handle) as url:
        gateway = StripeGateway(Settings(stripe_api_key="sk_test_x", stripe_api_base=url))
        client.app.dependency_overrides[get_gateway] = lambda: gateway  # type: ignore[attr-defined]
        try:
            yield stripe
        finally:
            client.app.dependency_overrides.clear()  # type: ignore[attr-defined]


def active_pledge(db: Session, **fields: Any) -> Pledge:
    reader = Reader(id=uuid.uuid4(), email="pause@example.org", name="Pat", locale="en")
    pledge = Pledge(
        id=uuid.uuid4(), reader_id=reader.id, amount_minor=500, fee_cover_minor=0,
        currency="eur", interval="month", status="active", stripe_customer_id="cus_paused",
        stripe_subscription_id="sub_paused", **fields,
    )  # fmt: skip
    db.add(reader)
    db.flush()
    db.add(pledge)
    db.commit()
    return pledge


def test_pause_skips_a_month_in_stripe_marks_the_pledge_and_mails(
    client: TestClient, pausable: PausableStripe, db: Session
) -> None:
    pledge = active_pledge(db)
    token = manage_token(pledge.id)

    paused = client.post(f"/manage/{token}/pause", follow_redirects=False)
    again = client.post(f"/manage/{token}/pause")

    assert paused.status_code == 303
    assert again.status_code == 409 and "Only an active pledge can be paused." in again.text
    [(_, form, headers)] = pausable.updates
    assert form["pause_collection[behavior]"] == "void"
    resumes_at = int(form["pause_collection[resumes_at]"])
    expected = (utcnow() + timedelta(days=30)).timestamp()
    assert abs(resumes_at - expected) < 120
    assert headers["Stripe-Version"] == API_VERSION
    db.expire_all()
    assert db.get(Pledge, pledge.id).status == "paused"  # type: ignore[union-attr]
    [mail] = db.scalars(select(EmailOutbox).where(EmailOutbox.template == "paused")).all()
    assert mail.to_email == "pause@example.org"
    assert mail.context["resumes_at"].startswith((utcnow() + timedelta(days=30)).date().isoformat())


def test_one_time_gift_cannot_be_paused(
    client: TestClient, pausable: PausableStripe, db: Session
) -> None:
    gift = active_pledge(db, stripe_payment_intent_id="pi_gift")
    gift.interval, gift.stripe_subscription_id = "once", None
    db.commit()

    response = client.post(f"/manage/{manage_token(gift.id)}/pause")

    assert response.status_code == 409
    assert pausable.updates == []
