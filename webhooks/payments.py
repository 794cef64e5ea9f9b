"""Payments, refunds and disputes from Stripe's invoices, charges and PaymentIntents: one row
per Stripe id, sums kept by the database rows, never a paid payment turned failed."""

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.models import Dispute, Payment, Pledge, PledgeStatus, Refund
from billing.stripe_gateway import NotFoundInStripe
from webhooks.errors import EventRejected, RetryLater
from webhooks.ledger import (
    Context,
    insert_ignoring_conflict,
    move_pledge,
    pledge_for_subscription,
    reader_of,
)
from webhooks.shapes import (
    invoice_payment_ids,
    invoice_period,
    invoice_subscription_id,
    object_id,
    timestamp,
)

# Declines where retrying the same card cannot work: the reader has to act.
HARD_DECLINES = frozenset(
    {
        "expired_card", "lost_card", "stolen_card", "incorrect_number", "card_not_supported",
        "pickup_card", "restricted_card", "invalid_account", "authentication_required",
    }
)  # fmt: skip
COUNTED_REFUND_STATUSES = ("succeeded", "pending", "requires_action")
CLOSED_DISPUTE_STATUSES = frozenset({"won", "lost", "warning_closed"})
PAID_STATUSES = ("paid", "refunded")


def locked_payment(session: Session, **criteria: Any) -> Payment | None:
    query = (
        select(Payment)
        .filter_by(**criteria)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one_or_none()


def invoice_payment_row(ctx: Context, invoice: dict[str, Any], pledge: Pledge) -> Payment:
    """The one payment row for an invoice, created on first sight; row-locked."""
    now = utcnow()
    period_start, period_end = invoice_period(invoice)
    created = insert_ignoring_conflict(
        ctx.session, Payment, "stripe_invoice_id",
        pledge_id=pledge.id, stripe_invoice_id=str(invoice["id"]),
        stripe_subscription_id=pledge.stripe_subscription_id,
        stripe_customer_id=object_id(invoice.get("customer")), status="pending",
        amount_minor=int(invoice.get("amount_due") or 0),
        currency=str(invoice.get("currency") or pledge.currency).lower(),
        refunded_minor=0, disputed_minor=0, attempt_count=0,
        period_start=period_start, period_end=period_end, created_at=now, updated_at=now,
    )  # fmt: skip
    payment = locked_payment(ctx.session, stripe_invoice_id=str(invoice["id"]))
    assert payment is not None
    if created:
        ctx.changes.append(f"payment {payment.id}: recorded invoice {invoice['id']}")
    return payment


def attach_stripe_payment(
    ctx: Context, payment: Payment, payment_intent_id: str | None, charge_id: str | None
) -> None:
    """Link the PaymentIntent and, once paid, the charge with fee and net from its balance
    transaction (a failed attempt's charge is not the one that moved money)."""
    if payment_intent_id and payment.stripe_payment_intent_id is None:
        payment.stripe_payment_intent_id = payment_intent_id
    if payment.status not in PAID_STATUSES:
        return
    if charge_id is None and payment.stripe_charge_id is None and payment.stripe_payment_intent_id:
        try:
            charge_id = ctx.stripe.latest_charge(payment.stripe_payment_intent_id)
        except NotFoundInStripe:
            charge_id = None
    if charge_id and payment.stripe_charge_id is None:
        payment.stripe_charge_id = charge_id
    if payment.stripe_charge_id and payment.fee_minor is None:
        try:
            fee_and_net = ctx.stripe.fee_and_net(payment.stripe_charge_id)
        except NotFoundInStripe:
            fee_and_net = None
        if fee_and_net is not None:
            payment.fee_minor, payment.net_minor = fee_and_net


def record_invoice_paid(ctx: Context, invoice: dict[str, Any], at: datetime) -> Payment | None:
    """One paid payment per invoice, the pledge active again, one receipt."""
    subscription_id = invoice_subscription_id(invoice)
    if subscription_id is None:
        return None  # an invoice outside pledges (a manual one in the dashboard)
    pledge = pledge_for_subscription(ctx, subscription_id)
    payment = invoice_payment_row(ctx, invoice, pledge)
    newly_paid = payment.status not in PAID_STATUSES
    if newly_paid:
        paid_at = timestamp((invoice.get("status_transitions") or {}).get("paid_at")) or at
        payment.status, payment.paid_at = "paid", paid_at
        payment.amount_minor = int(invoice.get("amount_paid") or 0)
        payment.currency = str(invoice.get("currency") or payment.currency).lower()
        payment.failure_code = payment.failure_message = payment.next_attempt_at = None
        payment.attempt_count = max(payment.attempt_count, int(invoice.get("attempt_count") or 0))
        ctx.changes.append(f"payment {payment.id}: paid {payment.amount_minor} {payment.currency}")
    attach_stripe_payment(ctx, payment, *invoice_payment_ids(invoice))
    if newly_paid:
        outgoing.payment_succeeded(ctx.session, payment=payment)
    # Also when already active: the stamp keeps an older past_due from landing afterwards.
    move_pledge(ctx, pledge, PledgeStatus.ACTIVE, at)
    if payment.period_end and (
        pledge.current_period_end is None or payment.period_end > pledge.current_period_end
    ):
        pledge.current_period_end = payment.period_end
    if newly_paid and ctx.notify and payment.amount_minor > 0:
        notifications.payment_succeeded(
            ctx.session, reader=reader_of(ctx.session, pledge), pledge=pledge, payment=payment,
            first=not _paid_before(ctx.session, pledge, payment),
        )  # fmt: skip
    return payment


def record_invoice_failed(
    ctx: Context, invoice: dict[str, Any], at: datetime, failure_code: str | None
) -> Payment | None:
    """A failed attempt: attempts and next try recorded, the pledge past due, one reminder."""
    subscription_id = invoice_subscription_id(invoice)
    if subscription_id is None:
        return None
    pledge = pledge_for_subscription(ctx, subscription_id)
    payment = invoice_payment_row(ctx, invoice, pledge)
    if payment.status in PAID_STATUSES:
        return payment  # a late report of an attempt before the one that paid
    attach_stripe_payment(ctx, payment, invoice_payment_ids(invoice)[0], None)
    newly_failed = payment.status != "failed"
    payment.status = "failed"
    payment.failed_at = payment.failed_at or at
    payment.amount_minor = int(invoice.get("amount_due") or payment.amount_minor)
    payment.attempt_count = max(payment.attempt_count, int(invoice.get("attempt_count") or 1))
    payment.next_attempt_at = timestamp(invoice.get("next_payment_attempt"))
    payment.failure_code = failure_code or payment.failure_code
    if newly_failed:
        outgoing.payment_failed(ctx.session, payment=payment)
    if pledge.status == PledgeStatus.PENDING:
        # The first invoice of a pledge being confirmed: the confirm call reports it.
        return payment
    moved = move_pledge(ctx, pledge, PledgeStatus.PAST_DUE, at)
    if newly_failed:
        ctx.changes.append(f"payment {payment.id}: failed ({payment.failure_code})")
    if newly_failed and (moved or pledge.status == PledgeStatus.PAST_DUE) and ctx.notify:
        notifications.payment_failed(
            ctx.session, reader=reader_of(ctx.session, pledge), pledge=pledge, payment=payment,
            hard_decline=payment.failure_code in HARD_DECLINES,
        )  # fmt: skip
    return payment


def _paid_before(session: Session, pledge: Pledge, payment: Payment) -> bool:
    earlier = session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(
            Payment.pledge_id == pledge.id,
            Payment.id != payment.id,
            Payment.status.in_(PAID_STATUSES),
        )
    )
    return bool(earlier)


def payment_for_charge(
    ctx: Context, charge_id: str | None, payment_intent_id: str | None
) -> Payment:
    """The payment a charge, refund or dispute is about; later if its invoice is not in yet."""
    session = ctx.session
    if charge_id:
        payment = locked_payment(session, stripe_charge_id=charge_id)
        if payment is not None:
            return payment
    if payment_intent_id:
        payment = locked_payment(session, stripe_payment_intent_id=payment_intent_id)
        if payment is not None:
            attach_stripe_payment(ctx, payment, None, charge_id)
            return payment
    if charge_id:
        try:
            charge = ctx.stripe.charge(charge_id)
        except NotFoundInStripe:
            charge = {}
        intent_id = object_id(charge.get("payment_intent"))
        invoice_id = object_id(charge.get("invoice"))  # 2017 shape
        payment = None
        if intent_id and intent_id != payment_intent_id:
            payment = locked_payment(session, stripe_payment_intent_id=intent_id)
        if payment is None and invoice_id:
            payment = locked_payment(session, stripe_invoice_id=invoice_id)
        if payment is not None:
            attach_stripe_payment(ctx, payment, intent_id, charge_id)
            return payment
    raise RetryLater(f"no payment for charge {charge_id} / {payment_intent_id} yet")


# ---- refunds and disputes ----------------------------------------------------------------


def record_refund(ctx: Context, refund: dict[str, Any], payment: Payment) -> None:
    """A refund row per Stripe refund; the payment's refunded total is their sum."""
    session, now = ctx.session, utcnow()
    amount, status = int(refund["amount"]), str(refund.get("status") or "succeeded")
    created = insert_ignoring_conflict(
        session, Refund, "stripe_refund_id",
        payment_id=payment.id, stripe_refund_id=str(refund["id"]), amount_minor=amount,
        currency=str(refund.get("currency") or payment.currency).lower(), status=status,
        reason=refund.get("reason"), refunded_at=timestamp(refund.get("created")) or now,
        created_at=now, updated_at=now,
    )  # fmt: skip
    row = session.scalars(
        select(Refund).where(Refund.stripe_refund_id == str(refund["id"])).with_for_update()
    ).one()
    if row.status != status:
        row.status = status
    refunded = int(
        session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.payment_id == payment.id, Refund.status.in_(COUNTED_REFUND_STATUSES)
            )
        )
        or 0
    )
    if refunded > payment.amount_minor:
        raise EventRejected(
            f"refund {refund['id']} would bring refunds on payment {payment.id} to {refunded}, "
            f"more than the {payment.amount_minor} paid"
        )
    if refunded != payment.refunded_minor:
        ctx.changes.append(f"payment {payment.id}: refunded {payment.refunded_minor} -> {refunded}")
        payment.refunded_minor = refunded
    if payment.status in PAID_STATUSES:
        fully = payment.amount_minor > 0 and refunded == payment.amount_minor
        payment.status = "refunded" if fully else "paid"
    if created and status in COUNTED_REFUND_STATUSES:
        outgoing.payment_refunded(
            session, payment=payment, stripe_refund_id=str(refund["id"]), refund_amount=amount
        )
    if created and status in COUNTED_REFUND_STATUSES and ctx.notify:
        pledge = session.get(Pledge, payment.pledge_id) if payment.pledge_id else None
        if pledge is not None:
            notifications.refund_created(
                session, reader=reader_of(session, pledge), pledge=pledge, payment=payment,
                refund_id=str(refund["id"]),
            )  # fmt: skip


def record_dispute(ctx: Context, dispute: dict[str, Any], at: datetime) -> None:
    """Opened, then won or lost; a closed dispute never reopens because of a late event."""
    payment = payment_for_charge(
        ctx, object_id(dispute.get("charge")), object_id(dispute.get("payment_intent"))
    )
    session, now = ctx.session, utcnow()
    status = str(dispute.get("status"))
    opened = insert_ignoring_conflict(
        session, Dispute, "stripe_dispute_id",
        payment_id=payment.id, stripe_dispute_id=str(dispute["id"]),
        amount_minor=int(dispute["amount"]),
        currency=str(dispute.get("currency") or payment.currency).lower(), status=status,
        reason=dispute.get("reason"), opened_at=timestamp(dispute.get("created")) or at,
        created_at=now, updated_at=now,
    )  # fmt: skip
    row = session.scalars(
        select(Dispute).where(Dispute.stripe_dispute_id == str(dispute["id"])).with_for_update()
    ).one()
    if row.status in CLOSED_DISPUTE_STATUSES and status not in CLOSED_DISPUTE_STATUSES:
        return
    changed = opened or row.status != status
    if row.status != status:
        ctx.changes.append(f"dispute {row.stripe_dispute_id}: {row.status} -> {status}")
        row.status = status
    if status in CLOSED_DISPUTE_STATUSES:
        row.closed_at = row.closed_at or at
    disputes = session.scalars(select(Dispute).where(Dispute.payment_id == payment.id)).all()
    payment.dispute_status = row.status
    # Money still held by or lost to the dispute; a won one came back.
    payment.disputed_minor = sum(
        d.amount_minor for d in disputes if d.status not in ("won", "warning_closed")
    )
    if changed:
        outgoing.payment_disputed(session, payment=payment, stripe_dispute_id=row.stripe_dispute_id)
