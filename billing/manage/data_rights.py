"""Readers' data rights: export everything held about an email address, and erase it on request.

Erasure anonymises: payments, refunds and disputes stay for the accounts the law requires, but
nothing left in our database points to the person.
"""

import uuid
from typing import Any

from sqlalchemy import Text, cast, or_, select, update
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.models import (
    Dispute,
    EmailOutbox,
    Payment,
    Pledge,
    PledgeStatus,
    Reader,
    Refund,
    StripeEvent,
)
from billing.stripe_gateway import StripeGateway

ERASED = "[erased]"
# Fields in Stripe's objects that carry who a person is.
PERSONAL_KEYS = frozenset(
    {"email", "name", "phone", "address", "shipping", "customer_email", "customer_name",
     "customer_phone", "customer_address", "customer_shipping", "billing_details",
     "receipt_email", "description"}
)  # fmt: skip
RUNNING_OR_STARTING = frozenset(
    {PledgeStatus.ACTIVE, PledgeStatus.PAST_DUE, PledgeStatus.PAUSED, PledgeStatus.PENDING}
)
UNSENT = ("pending", "sending", "failed")
# The ledger's own references and secrets are not the reader's data.
PRIVATE_PLEDGE_FIELDS = frozenset({"idempotency_key", "request_fingerprint"})


def find_reader(session: Session, email: str) -> Reader | None:
    return session.scalars(
        select(Reader).where(Reader.email == email.strip().lower(), Reader.erased_at.is_(None))
    ).one_or_none()


def _row(instance: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    values = {}
    for column in instance.__table__.columns:
        if column.key in skip:
            continue
        value = getattr(instance, column.key)
        values[column.key] = (
            value.isoformat()
            if hasattr(value, "isoformat")
            else (str(value) if isinstance(value, uuid.UUID) else value)
        )
    return values


def export_reader(session: Session, reader: Reader) -> dict[str, Any]:
    """The reader, their pledges, payments, refunds, disputes and the emails sent to them."""
    pledges = list(session.scalars(select(Pledge).where(Pledge.reader_id == reader.id)))
    pledge_ids = [pledge.id for pledge in pledges]
    payments = list(session.scalars(select(Payment).where(Payment.pledge_id.in_(pledge_ids))))
    payment_ids = [payment.id for payment in payments]
    refunds = session.scalars(select(Refund).where(Refund.payment_id.in_(payment_ids)))
    disputes = session.scalars(select(Dispute).where(Dispute.payment_id.in_(payment_ids)))
    emails = session.scalars(
        select(EmailOutbox).where(EmailOutbox.to_email == reader.email).order_by(EmailOutbox.id)
    )
    return {
        "exported_at": utcnow().isoformat(),
        "reader": _row(reader),
        "pledges": [_row(pledge, PRIVATE_PLEDGE_FIELDS) for pledge in pledges],
        "payments": [_row(payment) for payment in payments],
        "refunds": [_row(refund) for refund in refunds],
        "disputes": [_row(dispute) for dispute in disputes],
        "emails": [
            {
                key: _row(mail)[key]
                for key in ("template", "to_email", "status", "created_at", "sent_at")
            }
            for mail in emails
        ],
    }


def erase_reader(session: Session, gateway: StripeGateway, reader: Reader) -> None:
    """Stop running pledges, delete the Stripe customer, anonymise every row that names them."""
    email, name = reader.email, reader.name
    anonymous = f"erased+{reader.id}@invalid"
    pledges = list(session.scalars(select(Pledge).where(Pledge.reader_id == reader.id)))
    for pledge in pledges:
        if pledge.stripe_subscription_id and pledge.status in RUNNING_OR_STARTING:
            gateway.cancel_subscription(pledge.stripe_subscription_id)
            # A subscription that never got paid ends as failed, a paying one as canceled.
            started = pledge.status != PledgeStatus.PENDING
            previous_status = pledge.status
            pledge.status = PledgeStatus.CANCELED if started else PledgeStatus.FAILED
            pledge.canceled_at = pledge.canceled_at or utcnow()
            outgoing.pledge_moved(session, pledge=pledge, previous_status=previous_status)
        pledge.cancel_reason = None  # free text the reader typed
        pledge.request_fingerprint = None
    if reader.stripe_customer_id:
        gateway.delete_customer(reader.stripe_customer_id)
    session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.to_email == email, EmailOutbox.status.in_(UNSENT))
        .values(status="canceled")
    )
    session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.to_email == email)
        .values(to_email=anonymous, context={}, last_error=None)
    )
    _scrub_events(session, [email, reader.stripe_customer_id or ""], {email, name or ""})
    reader.email = anonymous
    reader.name = None
    reader.erased_at = utcnow()
    session.flush()
    outgoing.reader_erased(session, reader_id=reader.id)


def _scrub_events(session: Session, needles: list[str], values: set[str]) -> None:
    """Stored webhook payloads hold names and emails too: replace them, keep ids and amounts."""
    wanted = [needle for needle in needles if needle]
    if not wanted:
        return
    text = cast(StripeEvent.payload, Text)
    events = session.scalars(select(StripeEvent).where(or_(*(text.contains(n) for n in wanted))))
    lowered = {value.lower() for value in values if value}
    for event in events:
        event.payload = _scrubbed(event.payload, lowered)


def _scrubbed(value: Any, personal: set[str]) -> Any:
    if isinstance(value, dict):
        return {
            key: (ERASED if key in PERSONAL_KEYS and item else _scrubbed(item, personal))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_scrubbed(item, personal) for item in value]
    if isinstance(value, str) and value.lower() in personal:
        return ERASED
    return value
