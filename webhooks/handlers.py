"""One function per Stripe event type, turning the event's object into ledger changes."""

import uuid
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import select

from billing import notifications
from billing.abuse.limiter import MAX_CARDS_PER_PLEDGE
from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.models import Payment, Pledge, PledgeStatus, Reader
from billing.stripe_gateway import NotFoundInStripe
from webhooks import ledger, payments, payouts
from webhooks.errors import RetryLater
from webhooks.ledger import Context
from webhooks.shapes import invoice_payment_ids, object_id, timestamp

Handler = Callable[[Context, dict[str, Any]], None]
log = structlog.get_logger()


def subscription_changed(ctx: Context, subscription: dict[str, Any]) -> None:
    """created, updated, deleted, paused, resumed: the object's status says it all."""
    pledge = ledger.pledge_for_subscription(ctx, str(subscription["id"]), subscription)
    ledger.apply_subscription_state(ctx, pledge, subscription, ctx.event_at)


def invoice_paid(ctx: Context, invoice: dict[str, Any]) -> None:
    payments.record_invoice_paid(ctx, invoice, ctx.event_at)


def invoice_payment_failed(ctx: Context, invoice: dict[str, Any]) -> None:
    payments.record_invoice_failed(ctx, invoice, ctx.event_at, _invoice_decline_code(ctx, invoice))


def invoice_payment_action_required(ctx: Context, invoice: dict[str, Any]) -> None:
    payments.record_invoice_failed(ctx, invoice, ctx.event_at, "authentication_required")


def invoice_payment_paid(ctx: Context, invoice_payment: dict[str, Any]) -> None:
    """Links an invoice to the PaymentIntent and charge that paid it (current API only)."""
    invoice_id = object_id(invoice_payment.get("invoice"))
    if invoice_id is None:
        return
    payment = payments.locked_payment(ctx.session, stripe_invoice_id=invoice_id)
    if payment is None or payment.status not in payments.PAID_STATUSES:
        try:
            invoice = ctx.stripe.invoice(invoice_id)
        except NotFoundInStripe:
            raise RetryLater(f"invoice {invoice_id} is not in Stripe yet") from None
        if invoice.get("status") != "paid":
            raise RetryLater(f"invoice {invoice_id} is not paid in Stripe yet")
        payment = payments.record_invoice_paid(ctx, invoice, ctx.event_at)
    if payment is not None:
        paid_with = invoice_payment.get("payment") or {}
        payments.attach_stripe_payment(
            ctx,
            payment,
            object_id(paid_with.get("payment_intent")),
            object_id(paid_with.get("charge")),
        )


def charge_refunded(ctx: Context, charge: dict[str, Any]) -> None:
    payment = payments.payment_for_charge(
        ctx, object_id(charge.get("id")), object_id(charge.get("payment_intent"))
    )
    refunds = (charge.get("refunds") or {}).get("data")
    if refunds is None:
        # Current API versions leave the list out of the charge.
        refunds = ctx.stripe.refunds(str(charge["id"]))
    for refund in refunds:
        payments.record_refund(ctx, refund, payment)


def refund_changed(ctx: Context, refund: dict[str, Any]) -> None:
    payment = payments.payment_for_charge(
        ctx, object_id(refund.get("charge")), object_id(refund.get("payment_intent"))
    )
    payments.record_refund(ctx, refund, payment)


def dispute_changed(ctx: Context, dispute: dict[str, Any]) -> None:
    payments.record_dispute(ctx, dispute, ctx.event_at)


def customer_updated(ctx: Context, customer: dict[str, Any]) -> None:
    """The reader's email follows the customer's; Stripe's current copy wins over event order."""
    session = ctx.session
    reader = session.scalars(
        select(Reader).where(Reader.stripe_customer_id == str(customer["id"])).with_for_update()
    ).one_or_none()
    if reader is None or reader.erased_at is not None:
        return  # a reader who asked to be forgotten does not get an address back
    try:
        current = ctx.stripe.customer(str(customer["id"]))
    except NotFoundInStripe:
        return
    email = str(current.get("email") or "").lower()
    if not email or email == reader.email:
        return
    taken = session.scalars(select(Reader.id).where(Reader.email == email)).first()
    if taken is not None:
        # Two readers would share an address; an operator merges them, we do not guess.
        log.warning("reader_email_taken", reader_id=str(reader.id), customer_id=customer["id"])
        return
    ctx.changes.append(f"reader {reader.id}: email changed")
    reader.email = email
    outgoing.reader_updated(session, reader=reader, changed=["email"])


def setup_intent_succeeded(ctx: Context, setup_intent: dict[str, Any]) -> None:
    """The widget's card check: the confirm call starts the charge, so this only links ids."""
    pledge = _pledge_named_by(ctx, setup_intent, stripe_setup_intent_id=str(setup_intent["id"]))
    if pledge is not None and pledge.stripe_setup_intent_id is None:
        pledge.stripe_setup_intent_id = str(setup_intent["id"])


def setup_intent_failed(ctx: Context, setup_intent: dict[str, Any]) -> None:
    """Second line against card testing: an intent a card failed on confirms nothing more.

    The confirm route tries every card itself and ends a failed intent at once; a failure that
    Stripe reports on its own means the 3-D Secure secret was used from somewhere else.
    """
    intent_id = str(setup_intent["id"])
    if _pledge_named_by(ctx, setup_intent, stripe_setup_intent_id=intent_id) is None:
        return
    ctx.stripe.cancel_setup_intent(intent_id)
    ctx.changes.append(f"setup intent {intent_id}: canceled after a failure")


def payment_intent_succeeded(ctx: Context, payment_intent: dict[str, Any]) -> None:
    """A one-time gift paid; PaymentIntents of invoices are recorded by the invoice events."""
    pledge = _gift_pledge(ctx, payment_intent)
    if pledge is None:
        return
    payment = _gift_payment_row(ctx, payment_intent, pledge)
    if payment.status in payments.PAID_STATUSES:
        return
    payment.status, payment.paid_at = "paid", ctx.event_at
    payment.amount_minor = int(
        payment_intent.get("amount_received") or payment_intent.get("amount") or 0
    )
    payment.failure_code = None
    charge_id = object_id(payment_intent.get("latest_charge")) or _first_charge(payment_intent)
    payments.attach_stripe_payment(ctx, payment, None, charge_id)
    ctx.changes.append(f"payment {payment.id}: gift paid {payment.amount_minor}")
    outgoing.payment_succeeded(ctx.session, payment=payment)
    if pledge.status == PledgeStatus.PENDING:
        ledger.move_pledge(ctx, pledge, PledgeStatus.ACTIVE, ctx.event_at)
    if ctx.notify:
        notifications.payment_succeeded(
            ctx.session, reader=ledger.reader_of(ctx.session, pledge), pledge=pledge,
            payment=payment, first=True,
        )  # fmt: skip


def payment_intent_failed(ctx: Context, payment_intent: dict[str, Any]) -> None:
    pledge = _gift_pledge(ctx, payment_intent)
    if pledge is None:
        return
    payment = _gift_payment_row(ctx, payment_intent, pledge)
    if payment.status in payments.PAID_STATUSES:
        return
    error = payment_intent.get("last_payment_error") or {}
    payment.status, payment.failed_at = "failed", payment.failed_at or ctx.event_at
    payment.failure_code = error.get("decline_code") or error.get("code")
    payment.failure_message = (error.get("message") or "")[:500] or None
    outgoing.payment_failed(ctx.session, payment=payment)
    if pledge.status != PledgeStatus.PENDING:
        return
    # Its secret may have reached a browser for 3-D Secure: end it, as a failed setup is ended.
    ctx.stripe.cancel_payment_intent(str(payment_intent["id"]))
    # The reader may still try another card; the confirm route fails the pledge after the last.
    if pledge.card_attempts >= MAX_CARDS_PER_PLEDGE and ledger.move_pledge(
        ctx, pledge, PledgeStatus.FAILED, ctx.event_at
    ):
        pledge.failure_reason = pledge.failure_reason or payment.failure_message


def payment_method_updated(ctx: Context, payment_method: dict[str, Any]) -> None:
    """A card's new expiry (the reader's bank or Stripe's card updater) on the pledges it pays.

    The same card's expiry only ever moves forward, so a late older event changes nothing.
    """
    card = payment_method.get("card") or {}
    month, year = card.get("exp_month"), card.get("exp_year")
    if not month or not year:
        return
    pledges = ctx.session.scalars(
        select(Pledge)
        .where(Pledge.stripe_payment_method_id == str(payment_method["id"]))
        .with_for_update()
    ).all()
    for pledge in pledges:
        if (pledge.card_exp_year or 0, pledge.card_exp_month or 0) < (int(year), int(month)):
            pledge.card_exp_month, pledge.card_exp_year = int(month), int(year)
            ctx.changes.append(f"pledge {pledge.id}: card expires {month:0>2}/{year}")


HANDLERS: dict[str, Handler] = {
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "customer.subscription.paused": subscription_changed,
    "customer.subscription.resumed": subscription_changed,
    "invoice.paid": invoice_paid,
    "invoice.payment_succeeded": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "invoice.payment_action_required": invoice_payment_action_required,
    "invoice_payment.paid": invoice_payment_paid,
    "charge.refunded": charge_refunded,
    "refund.created": refund_changed,
    "refund.updated": refund_changed,
    "charge.dispute.created": dispute_changed,
    "charge.dispute.updated": dispute_changed,
    "charge.dispute.closed": dispute_changed,
    "customer.updated": customer_updated,
    "setup_intent.succeeded": setup_intent_succeeded,
    "setup_intent.setup_failed": setup_intent_failed,
    "payment_intent.succeeded": payment_intent_succeeded,
    "payment_intent.payment_failed": payment_intent_failed,
    "payment_method.updated": payment_method_updated,
    "payment_method.automatically_updated": payment_method_updated,
    "payout.created": payouts.record_payout,
    "payout.updated": payouts.record_payout,
    "payout.paid": payouts.record_payout,
    "payout.failed": payouts.record_payout,
    "payout.canceled": payouts.record_payout,
}


def _invoice_decline_code(ctx: Context, invoice: dict[str, Any]) -> str | None:
    """Current invoices do not carry the decline; the charge that failed does."""
    _intent_id, charge_id = invoice_payment_ids(invoice)
    if not charge_id:
        return None
    try:
        charge = ctx.stripe.charge(charge_id)
    except NotFoundInStripe:
        return None
    outcome = charge.get("outcome") or {}
    return charge.get("failure_code") or outcome.get("reason")


def _pledge_named_by(ctx: Context, stripe_object: dict[str, Any], **criteria: str) -> Pledge | None:
    pledge = ledger.locked_pledge(ctx.session, **criteria)
    if pledge is not None:
        return pledge
    pledge_id = (stripe_object.get("metadata") or {}).get("pledge_id")
    try:
        key = uuid.UUID(str(pledge_id)) if pledge_id else None
    except ValueError:
        key = None
    return ctx.session.get(Pledge, key, with_for_update=True) if key else None


def _gift_pledge(ctx: Context, payment_intent: dict[str, Any]) -> Pledge | None:
    intent_id = str(payment_intent["id"])
    pledge = _pledge_named_by(ctx, payment_intent, stripe_payment_intent_id=intent_id)
    if pledge is None or pledge.interval != "once":
        return None
    if pledge.stripe_payment_intent_id is None:
        pledge.stripe_payment_intent_id = intent_id
    return pledge if pledge.stripe_payment_intent_id == intent_id else None


def _gift_payment_row(ctx: Context, payment_intent: dict[str, Any], pledge: Pledge) -> Payment:
    now = utcnow()
    intent_id = str(payment_intent["id"])
    ledger.insert_ignoring_conflict(
        ctx.session, Payment, "stripe_payment_intent_id",
        pledge_id=pledge.id, stripe_payment_intent_id=intent_id,
        stripe_customer_id=object_id(payment_intent.get("customer")), status="pending",
        amount_minor=int(payment_intent.get("amount") or 0),
        currency=str(payment_intent.get("currency") or pledge.currency).lower(),
        refunded_minor=0, disputed_minor=0, attempt_count=1,
        created_at=timestamp(payment_intent.get("created")) or now, updated_at=now,
    )  # fmt: skip
    payment = payments.locked_payment(ctx.session, stripe_payment_intent_id=intent_id)
    assert payment is not None
    return payment


def _first_charge(payment_intent: dict[str, Any]) -> str | None:
    charges = (payment_intent.get("charges") or {}).get("data") or []  # 2017 shape
    return object_id(charges[0]) if charges else None
