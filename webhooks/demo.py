"""A believable year of pledges for a newcomer's `pledges dev --demo`: signed Stripe events in the
current API shape, posted to our own webhook endpoint and applied by the same handlers as real
ones. Seeded, so a second run posts the same event ids and the inbox takes none of them twice."""

import argparse
import copy
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from billing.db import session_scope
from billing.models import StripeEvent
from billing.settings import get_settings
from billing.stripe_gateway import API_VERSION, get_gateway
from webhooks.processing import process
from webhooks.signature import sign

FIXTURES: dict[str, Any] = json.loads((Path(__file__).parent / "stripe_objects.json").read_text())[
    "resources"
]
DAY = 86_400
FIRST_NAMES = [
    "Anna",
    "Ben",
    "Chloé",
    "Dmitri",
    "Elif",
    "Farah",
    "Gustav",
    "Hana",
    "Ivan",
    "Jo",
    "Katja",
    "Luis",
    "Mei",
    "Nadia",
    "Olu",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tereza",
]
LAST_NAMES = ["Weber", "Novak", "Okafor", "Silva", "Lindqvist", "Moreau", "Kowalski", "Tanaka"]
MONTHLY_AMOUNTS = [300, 500, 500, 500, 800, 1000, 1000, 1500, 2000, 5000]


@dataclass
class Timeline:
    """Every event of the demo year, in the order Stripe would have sent them."""

    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, at: int, kind: str, stripe_object: dict[str, Any], counted: str) -> None:
        self.events.append((at, kind, stripe_object))
        self.counts[counted] += 1


def _fixture(kind: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(FIXTURES[kind])
    document.update(overrides)
    return document


def _subscription(
    sub_id: str,
    customer_id: str,
    amount: int,
    currency: str,
    interval: str,
    created: int,
    status: str = "active",
    canceled_at: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    document = _fixture(
        "subscription",
        id=sub_id,
        customer=customer_id,
        status=status,
        currency=currency,
        metadata={},
        created=created,
        start_date=created,
        cancel_at=None,
        canceled_at=canceled_at,
        ended_at=canceled_at,
        cancel_at_period_end=False,
        trial_end=None,
        trial_start=None,
        pause_collection=None,
        pending_update=None,
        cancellation_details={"comment": None, "feedback": None, "reason": reason},
    )
    item = document["items"]["data"][0]
    item["subscription"] = sub_id
    item["current_period_start"], item["current_period_end"] = created, created + 30 * DAY
    item["price"].update(unit_amount=amount, unit_amount_decimal=str(amount), currency=currency)
    item["price"]["recurring"]["interval"] = interval
    return document


def _invoice(
    invoice_id: str,
    sub_id: str,
    customer_id: str,
    amount: int,
    currency: str,
    period_start: int,
    period_days: int,
    paid_at: int | None,
    attempt_count: int = 1,
) -> dict[str, Any]:
    suffix = invoice_id.removeprefix("in_")
    document = _fixture(
        "invoice",
        id=invoice_id,
        customer=customer_id,
        currency=currency,
        status="paid" if paid_at else "open",
        amount_due=amount,
        amount_paid=amount if paid_at else 0,
        amount_remaining=0 if paid_at else amount,
        attempt_count=attempt_count,
        attempted=True,
        next_payment_attempt=None if paid_at else period_start + (attempt_count + 2) * DAY,
        billing_reason="subscription_cycle",
        subtotal=amount,
        total=amount,
        amount_overpaid=0,
        last_finalization_error=None,
        status_transitions={
            "finalized_at": period_start,
            "marked_uncollectible_at": None,
            "paid_at": paid_at,
            "voided_at": None,
        },
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": sub_id},
        },
        payments={
            "object": "list",
            "has_more": False,
            "data": [
                {
                    "object": "invoice_payment",
                    "id": f"inpay_{suffix}",
                    "invoice": invoice_id,
                    "status": "paid" if paid_at else "open",
                    "payment": {
                        "type": "payment_intent",
                        "payment_intent": f"pi_{suffix}",
                        "charge": f"ch_{suffix}",
                    },
                }
            ],
        },
    )
    line = document["lines"]["data"][0]
    line.update(amount=amount, currency=currency, invoice=invoice_id, subtotal=amount)
    line["period"] = {"start": period_start, "end": period_start + period_days * DAY}
    return document


def build_timeline(seed: int, readers: int, now: int) -> tuple[list[dict[str, Any]], Timeline]:
    """The readers to create in Stripe and every event of their year, from `seed` alone."""
    rng = random.Random(seed)  # noqa: S311  (made-up readers, not secrets)
    year_ago = now - 365 * DAY
    people, timeline = [], Timeline()
    for number in range(readers):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        currency = "eur" if rng.random() < 0.6 else "usd"
        interval = "year" if rng.random() < 0.15 else "month"
        amount = rng.choice(MONTHLY_AMOUNTS) * (10 if interval == "year" else 1)
        person = {
            "key": f"demo-{seed}-{number}",
            "name": f"{first} {last}",
            "currency": currency,
            "email": f"{first.lower()}.{last.lower()}.{number}@example.org".replace("é", "e"),
            "locale": "ru" if first in ("Dmitri", "Ivan") else "en",
        }
        people.append(person)
        customer = f"@{number}"  # replaced by the Stripe customer id when posted
        sub_id = f"sub_demo{seed}r{number}"
        start = year_ago + int(rng.random() * 350) * DAY + rng.randrange(8 * 3600, 22 * 3600)
        quits_at = start + rng.randrange(60, 300) * DAY if rng.random() < 0.25 else None
        timeline.add(
            start,
            "customer.subscription.created",
            _subscription(sub_id, customer, amount, currency, interval, start),
            f"pledges {currency}",
        )
        period_days = 365 if interval == "year" else 30
        period = 0
        while (period_start := start + period * period_days * DAY) < now:
            if quits_at is not None and period_start >= quits_at:
                canceled = _subscription(
                    sub_id,
                    customer,
                    amount,
                    currency,
                    interval,
                    start,
                    "canceled",
                    quits_at,
                    "cancellation_requested",
                )
                timeline.add(
                    quits_at, "customer.subscription.deleted", canceled, f"cancellations {currency}"
                )
                break
            invoice_id = f"in_demo{seed}r{number}p{period}"
            args = (invoice_id, sub_id, customer, amount, currency, period_start, period_days)
            if period > 0 and rng.random() < 0.1:
                timeline.add(
                    period_start + 60,
                    "invoice.payment_failed",
                    _invoice(*args, paid_at=None),
                    f"failed payments {currency}",
                )
                if rng.random() < 0.35:
                    # Stripe's retries never got through: the subscription ends unpaid.
                    ended = period_start + 15 * DAY
                    if ended < now:
                        timeline.add(
                            ended,
                            "customer.subscription.deleted",
                            _subscription(
                                sub_id,
                                customer,
                                amount,
                                currency,
                                interval,
                                start,
                                "canceled",
                                ended,
                                "payment_failed",
                            ),
                            f"cancellations after failed payments {currency}",
                        )
                    break
                paid_at = period_start + 3 * DAY
                timeline.add(
                    paid_at,
                    "invoice.paid",
                    _invoice(*args, paid_at=paid_at, attempt_count=2),
                    f"recovered payments {currency}",
                )
            else:
                paid_at = period_start + 60
                timeline.add(
                    paid_at,
                    "invoice.paid",
                    _invoice(*args, paid_at=paid_at),
                    f"paid payments {currency}",
                )
            if rng.random() < 0.04 and paid_at + 2 * DAY < now:
                suffix = invoice_id.removeprefix("in_")
                refund = _fixture(
                    "refund",
                    id=f"re_{suffix}",
                    amount=amount,
                    currency=currency,
                    charge=f"ch_{suffix}",
                    payment_intent=f"pi_{suffix}",
                    created=paid_at + 2 * DAY,
                    status="succeeded",
                    reason="requested_by_customer",
                )
                timeline.add(paid_at + 2 * DAY, "refund.created", refund, f"refunds {currency}")
            period += 1
    timeline.events.sort(key=lambda entry: entry[0])
    return people, timeline


def _with_customer(document: Any, customers: dict[str, str]) -> Any:
    if isinstance(document, dict):
        return {key: _with_customer(value, customers) for key, value in document.items()}
    if isinstance(document, list):
        return [_with_customer(value, customers) for value in document]
    if isinstance(document, str) and document.startswith("@"):
        return customers[document]
    return document


def post_year(client: httpx.Client, seed: int = 2026, readers: int = 60) -> Counter[str]:
    """Create the demo readers in Stripe, then post and apply their year, oldest event first."""
    settings = get_settings()
    if not settings.stripe_api_base:
        raise SystemExit("the demo posts made-up Stripe events: run it on localstripe only")
    secret = settings.stripe_webhook_secret[0].get_secret_value()
    people, timeline = build_timeline(seed, readers, int(time.time()))
    gateway = get_gateway()
    customers = {
        f"@{number}": gateway.create_customer(
            email=person["email"],
            name=person["name"],
            locale=person["locale"],
            reader_id=person["key"],
        )
        for number, person in enumerate(people)
    }
    for at, kind, stripe_object in timeline.events:
        # From the object's id, which the seed fixes: a second run posts the same events.
        event_id = f"evt_{kind.rsplit('.', 1)[-1]}_{stripe_object['id']}"
        document = _fixture(
            "event",
            id=event_id,
            type=kind,
            created=at,
            api_version=API_VERSION,
            livemode=False,
            data={"object": _with_customer(stripe_object, customers)},
        )
        body = orjson.dumps(document)
        response = client.post(
            "/webhooks/stripe",
            content=body,
            headers={
                "Stripe-Signature": sign(body, secret, int(time.time())),
                "Content-Type": "application/json",
            },
        )
        response.raise_for_status()
        # Applied here, in order, rather than left to the worker's queue, whose order is
        # not Stripe's; the worker that also got it finds it handled. No mail: a year of
        # receipts for made-up readers would only bury the mails a newcomer's pledge sends.
        with session_scope() as session:
            stored = session.scalars(
                select(StripeEvent.id).where(StripeEvent.stripe_event_id == event_id)
            ).one()
        process(stored, notify=False)
    timeline.counts["readers"] = len(people)
    return timeline.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api", required=True, help="The API's base URL.")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--readers", type=int, default=60)
    arguments = parser.parse_args()
    with httpx.Client(base_url=arguments.api, timeout=30) as client:
        counts = post_year(client, arguments.seed, arguments.readers)
    print("Demo data: " + ", ".join(f"{count} {name}" for name, count in sorted(counts.items())))


if __name__ == "__main__":
    main()
