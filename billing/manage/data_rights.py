"""Readers' data rights: export everything held about an email address, and erase it on request.

Erasure anonymises: payments, refunds and disputes stay for the accounts the law requires, but
nothing left in our database points to the person.
"""

import re
import uuid
from typing import Any

import orjson
from sqlalchemy import Text, cast, func, or_, select, update
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
# Inside the events of an erased reader any address is theirs (or harmless to lose): free text
# such as metadata or a memo can hold one under a key we cannot know in advance.
EMAIL_ADDRESS = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[A-Za-z]{2,}")
# A name is replaced inside longer text only when it is long enough not to hit ids and words.
MIN_NAME_IN_TEXT = 4
# The ledger's own references and secrets are not the reader's data.
PRIVATE_PLEDGE_FIELDS = frozenset({"idempotency_key", "request_fingerprint"})

# A JSON string that is a whole customer id (never escaped: ids are [A-Za-z0-9_]).
_CUSTOMER_ID = re.compile(rb'"(cus_[^"\\\\]*)"')


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
        pledge.article_url = None  # what they read is about them too
    if reader.stripe_customer_id:
        gateway.delete_customer(reader.stripe_customer_id)
    # Their mails by address, and by their pledges and payments: an address they had before a
    # change at Stripe is theirs too, and the context holds live manage links.
    pledge_ids = [pledge.id for pledge in pledges]
    theirs = or_(
        func.lower(EmailOutbox.to_email) == email.lower(),
        EmailOutbox.pledge_id.in_(pledge_ids),
        EmailOutbox.payment_id.in_(select(Payment.id).where(Payment.pledge_id.in_(pledge_ids))),
    )
    session.execute(
        update(EmailOutbox).where(theirs, EmailOutbox.status.in_(UNSENT)).values(status="canceled")
    )
    session.execute(
        update(EmailOutbox).where(theirs).values(to_email=anonymous, context={}, last_error=None)
    )
    customer_ids = {reader.stripe_customer_id, *(pledge.stripe_customer_id for pledge in pledges)}
    _scrub_events(session, [email, *filter(None, customer_ids)], {email, name or ""})
    reader.email = anonymous
    reader.name = None
    reader.erased_at = utcnow()
    session.flush()
    outgoing.reader_erased(session, reader_id=reader.id)


def scrub_if_erased(session: Session, event: dict[str, Any]) -> dict[str, Any]:
    """An event about an erased reader (a customer.deleted, a late invoice) is stored without
    their email or name; others are stored as Stripe sent them."""
    return scrub_all_erased(session, [event])[0]


def scrub_all_erased(session: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`scrub_if_erased` for many events, with one query."""
    mentioned = [set(_customer_ids(event)) for event in events]
    customer_ids = set().union(*mentioned)
    if not customer_ids:
        return events
    erased = set(
        session.scalars(
            select(Reader.stripe_customer_id).where(
                Reader.stripe_customer_id.in_(customer_ids), Reader.erased_at.is_not(None)
            )
        )
    )
    return [
        scrubbed(event, set()) if ids & erased else event
        for event, ids in zip(events, mentioned, strict=True)
    ]


def _customer_ids(event: dict[str, Any]) -> list[str]:
    # Every string value that is a customer id, wherever Stripe nests it; searched in the
    # serialised event because a batch of events is too many dicts to walk in Python.
    return [match.decode() for match in _CUSTOMER_ID.findall(orjson.dumps(event))]


def _scrub_events(session: Session, needles: list[str], values: set[str]) -> None:
    """Stored webhook payloads hold names and emails too: replace them, keep ids and amounts."""
    wanted = [needle for needle in needles if needle]
    if not wanted:
        return
    payload = cast(StripeEvent.payload, Text)
    events = session.scalars(
        select(StripeEvent).where(
            or_(
                *(payload.icontains(needle, autoescape=True) for needle in wanted),
                *(StripeEvent.last_error.icontains(needle, autoescape=True) for needle in wanted),
            )
        )
    )
    personal = {value for value in values if value}
    for event in events:
        event.payload = scrubbed(event.payload, personal)
        if event.last_error:
            event.last_error = _scrubbed_text(event.last_error, personal)


def scrubbed(value: Any, personal: set[str]) -> Any:
    """A copy of a Stripe object without personal fields, email addresses or the given values."""
    if isinstance(value, dict):
        return {
            key: (ERASED if key in PERSONAL_KEYS and item else scrubbed(item, personal))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrubbed(item, personal) for item in value]
    if isinstance(value, str):
        return _scrubbed_text(value, personal)
    return value


def _scrubbed_text(text: str, personal: set[str]) -> str:
    lowered = text.lower()
    if any(lowered == value.lower() for value in personal):
        return ERASED
    text = EMAIL_ADDRESS.sub(ERASED, text)
    for value in personal:
        if len(value) >= MIN_NAME_IN_TEXT:
            text = re.sub(re.escape(value), ERASED, text, flags=re.IGNORECASE)
    return text
