"""Ledger rows written straight to the database, the way the webhook handlers will leave them."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import Payment, Pledge, PledgeStatus, Reader, Refund

# Ids from Stripe's own fixtures (stripe/openapi), made unique per row.
INVOICE_ID = "in_1Pgc6tB7WZ01zgkWu9fdqL6I"
REFUND_ID = "re_1Pgc72B7WZ01zgkWqPvrRrPE"
SUBSCRIPTION_ID = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"
PAYMENT_INTENT_ID = "pi_1PgafyB7WZ01zgkWSjxsAJo3"


def make_reader(
    session: Session,
    *,
    email: str = "ada@example.org",
    name: str | None = "Ada",
    locale: str = "en",
) -> Reader:
    reader = Reader(id=uuid.uuid4(), email=email, name=name, locale=locale)
    session.add(reader)
    session.flush()
    return reader


def make_pledge(
    session: Session,
    reader: Reader,
    *,
    amount_minor: int = 500,
    currency: str = "eur",
    interval: str = "month",
    status: str = PledgeStatus.ACTIVE,
) -> Pledge:
    pledge = Pledge(
        id=uuid.uuid4(),
        reader_id=reader.id,
        amount_minor=amount_minor,
        currency=currency,
        interval=interval,
        status=status,
        locale=reader.locale,
        stripe_subscription_id=None
        if interval == "once"
        else f"{SUBSCRIPTION_ID}_{uuid.uuid4().hex[:8]}",
    )
    session.add(pledge)
    session.flush()
    return pledge


def make_payment(
    session: Session,
    pledge: Pledge,
    *,
    status: str = "paid",
    invoice_id: str | None = None,
    paid_at: datetime | None = None,
    next_attempt_at: datetime | None = None,
) -> Payment:
    now = paid_at or utcnow()
    once = pledge.interval == "once"
    payment = Payment(
        pledge_id=pledge.id,
        stripe_invoice_id=None if once else (invoice_id or f"{INVOICE_ID}_{uuid.uuid4().hex[:8]}"),
        stripe_payment_intent_id=f"{PAYMENT_INTENT_ID}_{uuid.uuid4().hex[:8]}" if once else None,
        stripe_subscription_id=pledge.stripe_subscription_id,
        status=status,
        amount_minor=pledge.charged_minor,
        currency=pledge.currency,
        period_start=None if once else now,
        period_end=None if once else now + timedelta(days=30),
        paid_at=now if status == "paid" else None,
        failed_at=now if status == "failed" else None,
        next_attempt_at=next_attempt_at,
        attempt_count=1,
    )
    session.add(payment)
    session.flush()
    return payment


def make_refund(session: Session, payment: Payment, *, amount_minor: int) -> Refund:
    refund = Refund(
        payment_id=payment.id,
        stripe_refund_id=f"{REFUND_ID}_{uuid.uuid4().hex[:8]}",
        amount_minor=amount_minor,
        currency=payment.currency,
        status="succeeded",
        refunded_at=utcnow(),
    )
    session.add(refund)
    session.flush()
    return refund
