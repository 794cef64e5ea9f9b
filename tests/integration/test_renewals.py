"""Renewals written set-wise leave exactly the rows the handlers write one event at a time.

One batch mixes what the bulk path takes (new paid invoices of active pledges, a repeated
event, a free invoice, late news) with what it must leave to the handlers (a recovery after a
reminder, a cancellation in the same batch, a cancelled pledge, an invoice naming its
PaymentIntent, an erased reader). The batch runs twice on the same stored events, once as
shipped and once with the bulk path switched off, and every ledger row must be the same.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from billing.db import Base, get_engine
from billing.models import (
    EmailOutbox,
    OutgoingEvent,
    Payment,
    Pledge,
    PledgeHistory,
    Reader,
    RevenueRollup,
    StripeEvent,
)
from tests.stripe_events import event, invoice, post_event, subscription
from webhooks import processing, renewals

BASE = 1_800_000_000  # a fixed Stripe `created`, so both runs get the same events
NAMES = ("fresh", "regular", "free", "recovering", "cancelling", "ended", "intent", "erased")


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(BASE + seconds, UTC)


def uid(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"renewals/{name}")


def build_ledger(db: Session) -> None:
    """Eight supporters as earlier events left them; ids fixed so two runs compare."""
    for name in NAMES:
        db.add(
            Reader(
                id=uid(f"reader/{name}"), email=f"{name}@example.org", name=name.title(),
                stripe_customer_id=f"cus_{name}",
                erased_at=at(-100) if name == "erased" else None,
            )
        )  # fmt: skip
    db.flush()
    for name in NAMES:
        status = {"recovering": "past_due", "ended": "canceled"}.get(name, "active")
        db.add(
            Pledge(
                id=uid(f"pledge/{name}"), reader_id=uid(f"reader/{name}"), amount_minor=500,
                currency="eur", interval="month", status=status, locale="en",
                stripe_customer_id=f"cus_{name}", stripe_subscription_id=f"sub_{name}",
                activated_at=at(-1000), stripe_state_at=at(50) if name == "regular" else None,
                canceled_at=at(-10) if name == "ended" else None, created_at=at(-2000),
            )
        )  # fmt: skip
    db.flush()
    db.add(paid_before("regular", "in_regular_old"))
    db.add(paid_before("recovering", "in_recovering", status="failed"))
    db.flush()
    failed = db.scalars(select(Payment).where(Payment.stripe_invoice_id == "in_recovering")).one()
    db.add(
        EmailOutbox(
            dedupe_key="reminder:in_recovering:1", template="payment_failed",
            to_email="recovering@example.org", pledge_id=uid("pledge/recovering"),
            payment_id=failed.id, status="sent", sent_at=at(-50),
        )
    )  # fmt: skip
    db.commit()


def paid_before(name: str, invoice_id: str, status: str = "paid") -> Payment:
    return Payment(
        pledge_id=uid(f"pledge/{name}"), stripe_invoice_id=invoice_id, status=status,
        amount_minor=500, currency="eur", stripe_subscription_id=f"sub_{name}",
        paid_at=at(-3000) if status == "paid" else None,
        failed_at=at(-60) if status == "failed" else None,
    )  # fmt: skip


def renewal(name: str, number: int, seconds: int, **changes: Any) -> dict[str, Any]:
    kind = changes.pop("kind", "invoice.paid")
    paid = invoice(f"in_{name}_{number}", f"sub_{name}", f"cus_{name}", period_start=BASE + 10)
    paid.update(changes)
    return event(kind, paid, created=BASE + seconds, id=f"evt_{name}_{number}_{kind}")


def stored_events() -> list[dict[str, Any]]:
    intent = {"data": [{"payment": {"type": "payment_intent", "payment_intent": "pi_intent"}}]}
    cancelled = subscription("sub_cancelling", "cus_cancelling", status="canceled")
    return [
        renewal("fresh", 1, 10),
        renewal("fresh", 2, 20),
        renewal("fresh", 1, 11, kind="invoice.payment_succeeded"),  # Stripe sends both
        renewal("fresh", 3, 5),  # older news than the last one: no stamp moves back
        renewal("regular", 1, 30),  # before the pledge's stamp
        renewal("free", 1, 10, amount_paid=0, amount_due=0, total=0),  # no receipt
        renewal("free", 2, 20),
        event(
            "invoice.paid",
            invoice("in_recovering", "sub_recovering", "cus_recovering"),
            created=BASE + 10,
            id="evt_recovering",
        ),
        renewal("cancelling", 1, 10),
        event("customer.subscription.deleted", cancelled, created=BASE + 20, id="evt_cancel"),
        renewal("ended", 1, 10),
        renewal("intent", 1, 10, payments=intent),
        renewal("erased", 1, 10),
    ]


def run_batch(client: TestClient, db: Session) -> dict[str, Any]:
    build_ledger(db)
    for document in stored_events():
        assert post_event(client, document).status_code == 200
    batch = processing.process_batch(100)
    assert batch.claimed == len(stored_events())
    return snapshot(db)


def snapshot(db: Session) -> dict[str, Any]:
    """Every row the batch wrote, without database ids and clock times."""
    db.expire_all()
    invoices = dict(db.execute(select(Payment.id, Payment.stripe_invoice_id)).all())
    skip = {"id", "created_at", "updated_at", "handled_at", "received_at", "send_after"}

    def rows(model: type[Base], *order: Any) -> list[dict[str, Any]]:
        columns = [column for column in model.__table__.columns if column.name not in skip]
        found = [
            {column.name: getattr(row, column.key) for column in columns}
            for row in db.scalars(select(model).order_by(*order))
        ]
        for row in found:
            if "payment_id" in row:
                row["payment_id"] = invoices.get(row["payment_id"])
        return found

    outgoing = []
    for row in db.scalars(select(OutgoingEvent)):
        data = dict(row.data)
        if "payment" in data:
            data["payment"] = {**data["payment"], "id": invoices[data["payment"]["id"]]}
        outgoing.append((row.type, str(row.reader_id), repr(sorted(data.items()))))
    history = [
        {key: value for key, value in row.items() if key != "changed_at"}
        for row in rows(PledgeHistory, PledgeHistory.pledge_id, PledgeHistory.id)
    ]
    cohorts = [
        dict(row)
        for row in db.execute(text("SELECT * FROM cohort_supporters ORDER BY 1, 2")).mappings()
    ]
    db.commit()
    return {
        "cohorts": cohorts,
        "payments": rows(Payment, Payment.stripe_invoice_id),
        "pledges": rows(Pledge, Pledge.id),
        "outbox": rows(EmailOutbox, EmailOutbox.dedupe_key),
        "outgoing": sorted(outgoing),
        "events": rows(StripeEvent, StripeEvent.stripe_event_id),
        "rollup": rows(RevenueRollup, RevenueRollup.bucket_at, RevenueRollup.currency),
        "history": history,
    }


def empty_tables(db: Session) -> None:
    db.close()
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with get_engine().begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def test_bulk_renewals_write_what_the_handlers_write(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[str] = []
    apply = renewals.apply

    def spy(*args: Any) -> tuple[list[StripeEvent], list[StripeEvent]]:
        taken, left = apply(*args)
        applied.extend(row.stripe_event_id for row in taken)
        return taken, left

    monkeypatch.setattr(renewals, "apply", spy)
    bulk = run_batch(client, db)
    assert sorted(applied) == sorted(
        [
            "evt_fresh_1_invoice.paid", "evt_fresh_2_invoice.paid", "evt_fresh_3_invoice.paid",
            "evt_fresh_1_invoice.payment_succeeded", "evt_regular_1_invoice.paid",
            "evt_free_1_invoice.paid", "evt_free_2_invoice.paid",
        ]
    )  # fmt: skip

    empty_tables(db)
    monkeypatch.setattr(renewals, "apply", lambda _session, rows, _stripe: ([], list(rows)))
    one_by_one = run_batch(client, db)

    assert bulk["cohorts"], "the supporters' cohort rows are compared too"
    for table in bulk:
        assert bulk[table] == one_by_one[table], table
    templates = {row["dedupe_key"]: row["template"] for row in bulk["outbox"]}
    assert templates["receipt:in_fresh_1"] == "welcome_receipt"
    assert templates["receipt:in_fresh_2"] == "receipt"
    assert templates["receipt:in_regular_1"] == "receipt"
    assert "receipt:in_free_1" not in templates
    assert templates["receipt:in_free_2"] == "receipt"
    assert templates["receipt:in_recovering"] == "recovery_receipt"
    fresh = next(row for row in bulk["pledges"] if row["stripe_subscription_id"] == "sub_fresh")
    assert fresh["stripe_state_at"] == at(20)
    regular = next(row for row in bulk["pledges"] if row["stripe_subscription_id"] == "sub_regular")
    assert regular["stripe_state_at"] == at(50)
    cancelling = [
        row for row in bulk["pledges"] if row["stripe_subscription_id"] == "sub_cancelling"
    ]
    assert cancelling[0]["status"] == "canceled"
