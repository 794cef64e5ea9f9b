"""The gateway against current Stripe shapes, where localstripe differs (first-invoice 3-D Secure).

A small HTTP server on 127.0.0.1 answers like current Stripe, with objects from Stripe's own
fixtures: the invoice has `confirmation_secret` and no `payment_intent` field.
"""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from billing.settings import Settings
from billing.stripe_gateway import API_VERSION, StripeGateway
from tests.local_http import serving_locally

FIXTURES = json.loads(
    (Path(__file__).resolve().parents[2] / "webhooks" / "stripe_objects.json").read_text()
)["resources"]


class CurrentStripe:
    def __init__(self, intent_status: str, last_payment_error: dict[str, Any] | None) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[dict[str, str]] = []
        self.intent = copy.deepcopy(FIXTURES["payment_intent"])
        self.intent.update(status=intent_status, last_payment_error=last_payment_error)
        self.invoice = copy.deepcopy(FIXTURES["invoice"])
        self.invoice.update(id="in_first", status="open")
        self.invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": "sub_current"},
        }

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        self.bodies.append({key: str(value) for key, value in (await request.post()).items()})
        # stripe-python sends expand[0]=…, expand[1]=…
        expand = [value for key, value in request.query.items() if key.startswith("expand[")]
        if request.path == "/v1/subscriptions" and request.method == "POST":
            subscription = copy.deepcopy(FIXTURES["subscription"])
            subscription.update(id="sub_current", status="incomplete", latest_invoice=self.invoice)
            return web.json_response(subscription)
        if request.path == "/v1/invoices/in_first":
            if "payment_intent" in expand:
                return _error("This property cannot be expanded (payment_intent).")
            invoice = dict(self.invoice)
            if "confirmation_secret" in expand:
                invoice["confirmation_secret"] = {
                    "client_secret": self.intent["client_secret"], "type": "payment_intent",
                }  # fmt: skip
            return web.json_response(invoice)
        if request.path == f"/v1/payment_intents/{self.intent['id']}":
            return web.json_response(self.intent)
        return _error(f"Unrecognized request URL ({request.method}: {request.path})", 404)


def _error(message: str, status: int = 400) -> web.Response:
    body = {"error": {"type": "invalid_request_error", "message": message}}
    return web.json_response(body, status=status)


@pytest.fixture
def requires_action() -> Iterator[tuple[CurrentStripe, StripeGateway]]:
    stripe = CurrentStripe("requires_action", None)
    with serving_locally(stripe.handle) as url:
        yield stripe, StripeGateway(Settings(stripe_api_key="sk_test_x", stripe_api_base=url))


@pytest.fixture
def declined() -> Iterator[tuple[CurrentStripe, StripeGateway]]:
    error = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}
    stripe = CurrentStripe("requires_payment_method", error)
    with serving_locally(stripe.handle) as url:
        yield stripe, StripeGateway(Settings(stripe_api_key="sk_test_x", stripe_api_base=url))


def test_first_invoice_needing_3d_secure_hands_back_the_confirmation_secret(
    requires_action: tuple[CurrentStripe, StripeGateway],
) -> None:
    stripe, gateway = requires_action

    outcome = gateway.start_subscription(
        customer_id="cus_1", plan_id="plan", payment_method_id="pm_1", pledge_id="p-1"
    )

    assert outcome.status == "requires_action"
    assert outcome.client_secret == stripe.intent["client_secret"]
    create = stripe.requests[0]
    assert create[2]["Stripe-Version"] == API_VERSION
    assert create[2]["Idempotency-Key"] == "pledge:p-1:subscription:pm_1"
    # The pledge's own card pays it, not the customer's default.
    assert stripe.bodies[0]["default_payment_method"] == "pm_1"
    assert not any("payment_intent" in path for _, path, _ in stripe.requests if "invoices" in path)


def test_first_invoice_declined_gives_the_reader_the_reason(
    declined: tuple[CurrentStripe, StripeGateway],
) -> None:
    _, gateway = declined

    outcome = gateway.start_subscription(
        customer_id="cus_1", plan_id="plan", payment_method_id="pm_2", pledge_id="p-2"
    )

    assert outcome.status == "failed"
    assert outcome.failure_code == "insufficient_funds"
    assert outcome.failure_reason is not None and "insufficient funds" in outcome.failure_reason
