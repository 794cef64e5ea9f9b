"""A local stand-in for the Stripe endpoints localstripe lacks: payouts, balance transactions,
and the charge, refund, dispute and event lists the drift check reads. Objects are shaped like
Stripe's own fixtures; each list answers every item in one page, newest first as Stripe does."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from billing.settings import Settings
from billing.stripe_gateway import StripeGateway, StripeReader
from tests.local_http import serving_locally
from tests.stripe_events import fixture


@dataclass
class FakeStripe:
    balance_transactions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    charges: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        lists = {
            "/v1/charges": self.charges, "/v1/refunds": self.refunds,
            "/v1/disputes": self.disputes, "/v1/events": self.events, "/v1/subscriptions": [],
        }  # fmt: skip
        if request.path == "/v1/balance_transactions":
            payout = request.query.get("payout", "")
            return _list(request.path, self.balance_transactions.get(payout, []))
        if request.path in lists:
            since = int(request.query.get("created[gte]", "0"))
            items = [item for item in lists[request.path] if int(item["created"]) >= since]
            return _list(request.path, sorted(items, key=lambda i: -int(i["created"])))
        for charge in self.charges:
            if request.path == f"/v1/charges/{charge['id']}":
                return web.json_response(charge)
        error = {"error": {"type": "invalid_request_error", "code": "resource_missing",
                           "message": f"No such object: {request.path}"}}  # fmt: skip
        return web.json_response(error, status=404)


def _list(url: str, items: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"object": "list", "url": url, "has_more": False, "data": items})


@contextmanager
def serving(stripe: FakeStripe) -> Iterator[StripeReader]:
    """The fake on a free port of 127.0.0.1, and a StripeReader pointed at it."""
    with serving_locally(stripe.handle) as url:
        settings = Settings(stripe_api_key="sk_test_fake", stripe_api_base=url)
        yield StripeReader(StripeGateway(settings))


def payout(payout_id: str, amount: int, *, status: str = "paid", currency: str = "eur",
           arrival: int, created: int) -> dict[str, Any]:  # fmt: skip
    return fixture(
        "payout", id=payout_id, amount=amount, currency=currency, status=status,
        arrival_date=arrival, created=created, automatic=True,
        balance_transaction=f"txn_{payout_id}",
    )  # fmt: skip


def transaction(
    txn_id: str, source: str | None, amount: int, fee: int, *, kind: str, category: str,
    created: int, currency: str = "eur",
) -> dict[str, Any]:  # fmt: skip
    return fixture(
        "balance_transaction", id=txn_id, source=source, amount=amount, fee=fee,
        net=amount - fee, type=kind, reporting_category=category, created=created,
        currency=currency, available_on=created, status="available",
    )  # fmt: skip


def charge_transaction(charge_id: str, amount: int, fee: int, created: int) -> dict[str, Any]:
    return transaction(f"txn_{charge_id}", charge_id, amount, fee, kind="charge",
                       category="charge", created=created)  # fmt: skip


def payout_transaction(payout_id: str, amount: int, created: int) -> dict[str, Any]:
    """The payout's own line in its list: the money leaving the Stripe balance."""
    return transaction(f"txn_{payout_id}", payout_id, -amount, 0, kind="payout",
                       category="payout", created=created)  # fmt: skip
