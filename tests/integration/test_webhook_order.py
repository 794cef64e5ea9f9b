"""Events in any order, and concurrently, leave the ledger as Stripe's final state says."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from billing.models import Payment, Pledge, Reader, Refund
from tests.stripe_events import (
    NOW,
    dashboard_subscription,
    deliver,
    event,
    fixture,
    invoice,
    make_pledge,
    new_id,
    post_event,
    stored_event,
    subscription,
)
from webhooks import processing
from webhooks.errors import RetryLater


def count(db: Session, model: type[Any]) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_invoice_paid_before_subscription_created_adopts_the_subscription(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    sub_id, customer_id = dashboard_subscription(stripe_api, "Donor@Example.org", amount=900)
    paid = invoice(new_id("in"), sub_id, "cus_ignored", amount=900)

    first = deliver(client, db, event("invoice.paid", paid, created=NOW + 5))
    incomplete = subscription(sub_id, customer_id, status="incomplete", amount=900)
    created = deliver(client, db, event("customer.subscription.created", incomplete, created=NOW))

    assert (first.status, created.status) == ("handled", "handled")
    pledge = db.scalars(select(Pledge)).one()
    assert (pledge.status, pledge.amount_minor, pledge.currency, pledge.interval) == (
        "active", 900, "eur", "month",
    )  # fmt: skip
    assert pledge.source == "stripe" and pledge.stripe_subscription_id == sub_id
    reader = db.get(Reader, pledge.reader_id)
    assert reader is not None and reader.email == "donor@example.org"
    payment = db.scalars(select(Payment)).one()
    assert (payment.pledge_id, payment.amount_minor) == (pledge.id, 900)


def test_late_past_due_update_does_not_undo_a_later_payment(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id)
    renewal_id = new_id("in")
    failed = invoice(renewal_id, sub_id, "cus_x", status="open")
    deliver(client, db, event("invoice.payment_failed", failed, created=NOW))
    deliver(
        client, db, event("invoice.paid", invoice(renewal_id, sub_id, "cus_x"), created=NOW + 120)
    )

    late = deliver(
        client, db,
        event("customer.subscription.updated", subscription(sub_id, "cus_x", status="past_due"),
              created=NOW + 1),
    )  # fmt: skip

    assert late.status == "handled"
    db.expire_all()
    current = db.get(Pledge, pledge.id)
    assert current is not None and current.status == "active"


def test_past_due_update_arriving_after_a_later_invoice_paid_is_ignored(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id)  # active, no Stripe news seen yet
    deliver(client, db, event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"), created=NOW))

    past_due = subscription(sub_id, "cus_x", status="past_due")
    deliver(client, db, event("customer.subscription.updated", past_due, created=NOW - 60))

    db.expire_all()
    current = db.get(Pledge, pledge.id)
    assert current is not None and current.status == "active"


def test_late_incomplete_created_event_does_not_undo_a_confirmed_pledge(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id)
    db.execute(update(Pledge).values(activated_at=datetime.now(UTC)))  # as confirm leaves it
    db.commit()

    incomplete = subscription(sub_id, "cus_x", status="incomplete")
    deliver(client, db, event("customer.subscription.created", incomplete, created=NOW - 60))

    db.expire_all()
    current = db.get(Pledge, pledge.id)
    assert current is not None and current.status == "active"


def test_refund_larger_than_what_remains_is_rejected_and_changes_nothing(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    invoice_id, charge_id = new_id("in"), new_id("ch")
    deliver(client, db, event("invoice.paid", invoice(invoice_id, sub_id, "cus_x", amount=500)))
    deliver(client, db, event("invoice_payment.paid", fixture(
        "invoice_payment", id=new_id("inpay"), invoice=invoice_id,
        payment={"type": "payment_intent", "payment_intent": new_id("pi"), "charge": charge_id},
    )))  # fmt: skip
    refund = fixture("refund", charge=charge_id, currency="eur", status="succeeded")
    deliver(client, db, event("refund.created", {**refund, "id": new_id("re"), "amount": 300}))

    too_much = deliver(
        client, db, event("refund.created", {**refund, "id": new_id("re"), "amount": 300})
    )

    assert too_much.status == "failed"
    assert too_much.last_error is not None and "more than the 500 paid" in too_much.last_error
    payment = db.scalars(select(Payment)).one()
    assert (payment.refunded_minor, payment.status) == (300, "paid")
    assert count(db, Refund) == 1


def test_refund_for_a_payment_not_seen_yet_is_retried_later(
    client: TestClient, db: Session
) -> None:
    refund = fixture("refund", id=new_id("re"), charge=new_id("ch"), amount=100)
    refund_event = event("refund.created", refund)
    post_event(client, refund_event)

    with pytest.raises(RetryLater):
        processing.process(stored_event(db, refund_event["id"]).id)


def test_same_event_processed_by_five_workers_at_once_records_one_payment(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    paid = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"))
    post_event(client, paid)
    row_id = stored_event(db, paid["id"]).id

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(lambda _: processing.process(row_id).status, range(5)))

    assert outcomes == ["handled"] * 5
    assert count(db, Payment) == 1
    assert stored_event(db, paid["id"]).attempts == 1


def test_two_events_about_one_new_subscription_at_once_make_one_pledge(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    sub_id, customer_id = dashboard_subscription(stripe_api, "twice@example.org")
    events = [
        event("customer.subscription.created", subscription(sub_id, customer_id, amount=900)),
        event("invoice.paid", invoice(new_id("in"), sub_id, customer_id, amount=900)),
    ]
    row_ids = []
    for document in events:
        post_event(client, document)
        row_ids.append(stored_event(db, document["id"]).id)

    def run(row_id: int) -> str:
        for _ in range(3):  # a lost insert race is transient: the retry sees the winner's row
            try:
                return processing.process(row_id).status
            except processing.TRANSIENT_ERRORS:
                continue
        return "gave up"

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(run, row_ids)) == ["handled", "handled"]
    assert count(db, Pledge) == 1
    assert count(db, Reader) == 1
