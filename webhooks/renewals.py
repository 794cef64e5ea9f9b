"""Renewals in bulk: a claimed batch's paid invoices of active pledges in a few statements.

On the first of the month thousands of `invoice.paid` events arrive together, nearly all saying
the same thing: a new invoice of an active pledge was paid. `apply` writes their payments,
receipts and outgoing events set-wise, exactly as `payments.record_invoice_paid` writes them one
by one (tests/test_renewals.py runs both on the same events and compares every row). Anything
else is left to the handlers, event by event: a pledge with other news in the batch, one not
active, an invoice seen before, or one that names its charge (its fee is Stripe's to tell).
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import insert_rows, utcnow
from billing.endpoints import events as outgoing
from billing.models import Payment, Pledge, PledgeStatus, Reader, StripeEvent
from billing.stripe_gateway import StripeReader
from webhooks.handlers import HANDLERS
from webhooks.ledger import Context, move_pledge
from webhooks.payments import PAID_STATUSES
from webhooks.shapes import (
    invoice_payment_ids,
    invoice_period,
    invoice_subscription_id,
    object_id,
    timestamp,
)

RENEWAL_TYPES = frozenset({"invoice.paid", "invoice.payment_succeeded"})


def apply(
    session: Session, rows: Sequence[StripeEvent], stripe: StripeReader
) -> tuple[list[StripeEvent], list[StripeEvent]]:
    """(applied, left): the rows applied here, and the others in their order for the handlers.

    `rows` are locked by the caller. The pledges of every subscription in the batch are
    locked here at once, in subscription order as the handlers take them one by one, so that
    no two batches ever wait on each other in a circle.
    """
    groups, subscriptions = _renewals_by_subscription(rows)
    if not groups:
        return [], list(rows)
    pledges = {
        pledge.stripe_subscription_id: (pledge, reader)
        for pledge, reader in session.execute(
            select(Pledge, Reader)
            .join(Reader, Reader.id == Pledge.reader_id)
            .where(Pledge.stripe_subscription_id.in_(subscriptions))
            .order_by(Pledge.stripe_subscription_id)
            .with_for_update(of=Pledge)
            .execution_options(populate_existing=True)
        )
    }
    invoice_ids = {_invoice(row)["id"] for group in groups.values() for row in group}
    seen = set(
        session.scalars(
            select(Payment.stripe_invoice_id).where(Payment.stripe_invoice_id.in_(invoice_ids))
        )
    )
    for subscription_id, group in list(groups.items()):
        pledge_and_reader = pledges.get(subscription_id)
        if (
            pledge_and_reader is None
            or pledge_and_reader[0].status != PledgeStatus.ACTIVE
            or pledge_and_reader[1].erased_at is not None
            or any(_invoice(row)["id"] in seen for row in group)
        ):
            del groups[subscription_id]
    if not groups:
        return [], list(rows)
    paid_before = set(
        session.scalars(
            select(Payment.pledge_id)
            .where(
                Payment.pledge_id.in_([pledges[sub][0].id for sub in groups]),
                Payment.status.in_(PAID_STATUSES),
            )
            .distinct()
        )
    )
    now, new_payments, firsts = utcnow(), [], []
    for subscription_id, group in groups.items():
        pledge, _reader = pledges[subscription_id]
        recorded: set[str] = set()
        for row in group:
            invoice, at = _invoice(row), _created(row)
            if invoice["id"] not in recorded:
                # A second event about the same invoice (paid, then payment_succeeded) finds
                # it paid: only the stamp below is news.
                recorded.add(invoice["id"])
                new_payments.append(_paid_payment(invoice, pledge, at, now))
                firsts.append(pledge.id not in paid_before)
                paid_before.add(pledge.id)
            # An active pledge stays active: this only moves its stamp forward.
            move_pledge(Context(session, stripe, at), pledge, PledgeStatus.ACTIVE, at)
            _, period_end = invoice_period(invoice)
            if period_end and (
                pledge.current_period_end is None or period_end > pledge.current_period_end
            ):
                pledge.current_period_end = period_end
    by_invoice = {
        payment.stripe_invoice_id: payment
        for payment in session.scalars(insert_rows(Payment, new_payments).returning(Payment))
    }
    payments = [by_invoice[row["stripe_invoice_id"]] for row in new_payments]
    readers = {pledge.id: (pledge, reader) for pledge, reader in pledges.values()}
    outgoing.record_many(
        session,
        [
            (
                "payment.succeeded",
                readers[payment.pledge_id][0].reader_id,
                outgoing.payment_data(payment, readers[payment.pledge_id][0].reader_id),
            )
            for payment in payments
            if payment.pledge_id is not None
        ],
    )
    notifications.renewals_paid(
        session,
        [
            (readers[payment.pledge_id][1], readers[payment.pledge_id][0], payment, first)
            for payment, first in zip(payments, firsts, strict=True)
            if payment.pledge_id is not None and payment.amount_minor > 0
        ],
    )
    applied = [row for group in groups.values() for row in group]
    taken = {id(row) for row in applied}
    return applied, [row for row in rows if id(row) not in taken]


def _renewals_by_subscription(
    rows: Sequence[StripeEvent],
) -> tuple[dict[str, list[StripeEvent]], set[str]]:
    """(each subscription whose every handled event in `rows` is a plain renewal: its events;
    every subscription the rows are about)."""
    groups: dict[str, list[StripeEvent]] = defaultdict(list)
    others: set[str] = set()
    for row in rows:
        stripe_object: dict[str, Any] = row.payload["data"]["object"]
        kind = stripe_object.get("object")
        if kind == "invoice":
            subscription_id = invoice_subscription_id(stripe_object)
        elif kind == "subscription":
            subscription_id = str(stripe_object.get("id") or "")
        else:
            continue
        if not subscription_id or row.type not in HANDLERS:
            continue
        if row.type in RENEWAL_TYPES and invoice_payment_ids(stripe_object) == (None, None):
            groups[subscription_id].append(row)
        else:
            others.add(subscription_id)
    renewals = {sub: group for sub, group in sorted(groups.items()) if sub not in others}
    return renewals, others | set(groups)


def _invoice(row: StripeEvent) -> dict[str, Any]:
    invoice: dict[str, Any] = row.payload["data"]["object"]
    return invoice


def _created(row: StripeEvent) -> datetime:
    at = timestamp(row.payload["created"])
    assert at is not None
    return at


def _paid_payment(
    invoice: dict[str, Any], pledge: Pledge, at: datetime, now: datetime
) -> dict[str, Any]:
    """The row `record_invoice_paid` leaves for a new paid invoice."""
    period_start, period_end = invoice_period(invoice)
    return {
        "pledge_id": pledge.id,
        "stripe_invoice_id": str(invoice["id"]),
        "stripe_subscription_id": pledge.stripe_subscription_id,
        "stripe_customer_id": object_id(invoice.get("customer")),
        "status": "paid",
        "paid_at": timestamp((invoice.get("status_transitions") or {}).get("paid_at")) or at,
        "amount_minor": int(invoice.get("amount_paid") or 0),
        "currency": str(invoice.get("currency") or pledge.currency).lower(),
        "refunded_minor": 0,
        "disputed_minor": 0,
        "attempt_count": max(0, int(invoice.get("attempt_count") or 0)),
        "period_start": period_start,
        "period_end": period_end,
        "created_at": now,
        "updated_at": now,
    }
