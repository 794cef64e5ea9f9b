"""The events the newsroom's systems hear about, written in the transaction of the ledger change.

Each call adds one `outgoing_events` row and a pending delivery for every enabled endpoint that
subscribed to its type; the deliveries are enqueued after commit (task `DELIVER_TASK`, by name).
Payloads hold our ids, statuses and amounts (minor units + currency); the reader's email and
name are added at delivery time, and only for endpoints allowed to receive them.
"""

import fnmatch
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.db import columns_of, insert_columns, utcnow
from billing.models import OutgoingEvent, Payment, Pledge, PledgeStatus, Reader, WebhookDelivery
from billing.models import WebhookEndpoint as Endpoint
from billing.task_queue import enqueue_after_commit

DELIVER_TASK = "workers.outgoing.deliver"
VERSION = 1
EVENT_TYPES = (
    "pledge.created",
    "pledge.activated",
    "pledge.amount_changed",
    "pledge.paused",
    "pledge.resumed",
    "pledge.past_due",
    "pledge.cancellation_started",
    "pledge.canceled",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "payment.disputed",
    "reader.updated",
    "reader.erased",
)
# Which pledge status change is which event; moves not listed (to failed) tell nobody.
_STATUS_EVENTS = {
    PledgeStatus.ACTIVE: "pledge.activated",
    PledgeStatus.PAUSED: "pledge.paused",
    PledgeStatus.PAST_DUE: "pledge.past_due",
    PledgeStatus.CANCELED: "pledge.canceled",
}


def matches(patterns: list[str], event_type: str) -> bool:
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def record(
    session: Session, *, event_type: str, reader_id: uuid.UUID | None, data: dict[str, Any]
) -> None:
    """Store the event and queue it for every enabled endpoint that wants this type."""
    record_many(session, [(event_type, reader_id, data)])


def record_many(
    session: Session, events: Sequence[tuple[str, uuid.UUID | None, dict[str, Any]]]
) -> None:
    """`record` for (type, reader, data) triples, in one INSERT: a batch of renewals."""
    if not events:
        return
    now = utcnow()
    event_ids = [f"evt_{uuid.uuid4().hex}" for _ in events]
    rows = [
        {
            "event_id": event_id,
            "type": event_type,
            "version": VERSION,
            "reader_id": reader_id,
            "data": data,
            "occurred_at": now,
        }
        for event_id, (event_type, reader_id, data) in zip(event_ids, events, strict=True)
    ]
    assert all(event_type in EVENT_TYPES for event_type, _, _ in events), events
    row_ids: dict[str, int] = {}
    endpoints: dict[int, list[str]] = {}
    for event_id, row_id, endpoint_id, patterns in session.execute(_RECORD, columns_of(rows)):
        row_ids[event_id] = row_id
        if endpoint_id is not None:
            endpoints[endpoint_id] = patterns
    queue_deliveries(
        session,
        [
            (endpoint_id, row_ids[event_id], reader_id)
            for event_id, (event_type, reader_id, _data) in zip(event_ids, events, strict=True)
            for endpoint_id, patterns in endpoints.items()
            if matches(patterns, event_type)
        ],
        replay=False,
    )


# Built once, and with the enabled endpoints in the same round trip: building the INSERT and
# asking for the endpoints apart took longer than the rest of recording an event.
_INSERTED = (
    insert_columns(
        OutgoingEvent, ["event_id", "type", "version", "reader_id", "data", "occurred_at"]
    )
    .returning(OutgoingEvent.event_id, OutgoingEvent.id)
    .cte("inserted")
)
_RECORD = select(
    _INSERTED.c.event_id, _INSERTED.c.id, Endpoint.id, Endpoint.event_types
).select_from(_INSERTED.outerjoin(Endpoint, Endpoint.status == "enabled"))


def queue_deliveries(
    session: Session, targets: list[tuple[int, int, uuid.UUID | None]], *, replay: bool
) -> int:
    """One pending delivery per (endpoint, event, reader), each sent after the commit."""
    if not targets:
        return 0
    now = utcnow()
    delivery_ids = session.scalars(
        insert(WebhookDelivery)
        .values(
            [
                {
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "reader_id": reader_id,
                    "replay": replay,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for endpoint_id, event_id, reader_id in targets
            ]
        )
        .returning(WebhookDelivery.id)
    ).all()
    for delivery_id in delivery_ids:
        enqueue_after_commit(session, DELIVER_TASK, delivery_id)
    return len(delivery_ids)


# ---- what each event says ---------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def pledge_data(pledge: Pledge, **extra: Any) -> dict[str, Any]:
    return {
        "pledge": {
            "id": str(pledge.id),
            "status": pledge.status,
            "amount": pledge.amount_minor,
            "fee_cover": pledge.fee_cover_minor,
            "total_amount": pledge.charged_minor,
            "currency": pledge.currency,
            "interval": pledge.interval,
            "source": pledge.source,
            "campaign": pledge.campaign,
            "stripe_subscription_id": pledge.stripe_subscription_id,
            "created_at": _iso(pledge.created_at),
            "activated_at": _iso(pledge.activated_at),
            "canceled_at": _iso(pledge.canceled_at),
            "current_period_end": _iso(pledge.current_period_end),
            **extra,
        },
        "reader": {"id": str(pledge.reader_id)},
    }


def payment_data(payment: Payment, reader_id: uuid.UUID, **extra: Any) -> dict[str, Any]:
    return {
        "payment": {
            "id": payment.id,
            "pledge_id": str(payment.pledge_id) if payment.pledge_id else None,
            "status": payment.status,
            "amount": payment.amount_minor,
            "currency": payment.currency,
            "refunded_amount": payment.refunded_minor,
            "disputed_amount": payment.disputed_minor,
            "dispute_status": payment.dispute_status,
            "failure_code": payment.failure_code,
            "attempt_count": payment.attempt_count,
            "next_attempt_at": _iso(payment.next_attempt_at),
            "paid_at": _iso(payment.paid_at),
            "stripe_invoice_id": payment.stripe_invoice_id,
            "stripe_payment_intent_id": payment.stripe_payment_intent_id,
            **extra,
        },
        "reader": {"id": str(reader_id)},
    }


# ---- the calls the ledger makes ----------------------------------------------------------


def pledge_created(session: Session, *, pledge: Pledge) -> None:
    record(
        session, event_type="pledge.created", reader_id=pledge.reader_id, data=pledge_data(pledge)
    )


def pledge_cancellation_started(session: Session, *, pledge: Pledge) -> None:
    """The reader opened the save page from Cancel: a CRM may want to reach out first."""
    record(
        session, event_type="pledge.cancellation_started", reader_id=pledge.reader_id,
        data=pledge_data(pledge),
    )  # fmt: skip


def pledge_moved(session: Session, *, pledge: Pledge, previous_status: str) -> None:
    """After a status change: activated, paused, resumed, past due or canceled."""
    if pledge.status == previous_status:
        return
    event_type = _STATUS_EVENTS.get(PledgeStatus(pledge.status))
    if pledge.status == PledgeStatus.ACTIVE and previous_status == PledgeStatus.PAUSED:
        event_type = "pledge.resumed"
    if event_type is None:
        return
    record(
        session, event_type=event_type, reader_id=pledge.reader_id,
        data=pledge_data(pledge, previous_status=previous_status),
    )  # fmt: skip


def pledge_amount_changed(
    session: Session, *, pledge: Pledge, previous_total_amount: int, previous_interval: str
) -> None:
    data = pledge_data(
        pledge, previous_total_amount=previous_total_amount, previous_interval=previous_interval
    )
    record(session, event_type="pledge.amount_changed", reader_id=pledge.reader_id, data=data)


def _payment_event(session: Session, event_type: str, payment: Payment, **extra: Any) -> None:
    pledge = session.get(Pledge, payment.pledge_id) if payment.pledge_id else None
    if pledge is None:
        return  # a payment outside pledges (a manual invoice): no reader to speak of
    data = payment_data(payment, pledge.reader_id, **extra)
    record(session, event_type=event_type, reader_id=pledge.reader_id, data=data)


def payment_succeeded(session: Session, *, payment: Payment) -> None:
    _payment_event(session, "payment.succeeded", payment)


def payment_failed(session: Session, *, payment: Payment) -> None:
    _payment_event(session, "payment.failed", payment)


def payment_refunded(
    session: Session, *, payment: Payment, stripe_refund_id: str, refund_amount: int
) -> None:
    _payment_event(
        session, "payment.refunded", payment, stripe_refund_id=stripe_refund_id,
        refund_amount=refund_amount,
    )  # fmt: skip


def payment_disputed(session: Session, *, payment: Payment, stripe_dispute_id: str) -> None:
    """A dispute opened or changed status (won, lost); `dispute_status` says which."""
    _payment_event(session, "payment.disputed", payment, stripe_dispute_id=stripe_dispute_id)


def reader_updated(session: Session, *, reader: Reader, changed: list[str]) -> None:
    data = {"reader": {"id": str(reader.id), "changed": changed}}
    record(session, event_type="reader.updated", reader_id=reader.id, data=data)


def reader_erased(session: Session, *, reader_id: uuid.UUID) -> None:
    """Only the id: the person is gone, and no endpoint hears who they were."""
    data = {"reader": {"id": str(reader_id)}}
    record(session, event_type="reader.erased", reader_id=reader_id, data=data)
