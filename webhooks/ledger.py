"""Pledges and readers as Stripe subscriptions and customers say: each write idempotent under a
unique constraint, and no status moved backwards because older news came late."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.models import Pledge, PledgeStatus, Reader
from billing.stripe_gateway import NotFoundInStripe, StripeReader
from webhooks.errors import EventRejected, RetryLater
from webhooks.shapes import (
    object_id,
    subscription_period_end,
    subscription_terms,
    timestamp,
)

STATUS_FROM_STRIPE = {
    "active": PledgeStatus.ACTIVE,
    "trialing": PledgeStatus.ACTIVE,
    "past_due": PledgeStatus.PAST_DUE,
    "unpaid": PledgeStatus.PAST_DUE,
    "paused": PledgeStatus.PAUSED,
    "canceled": PledgeStatus.CANCELED,
    "incomplete_expired": PledgeStatus.FAILED,
    "incomplete": PledgeStatus.PENDING,
}
# Which of two statuses stamped with the same second wins: Stripe's `created` has one-second
# resolution, and a retry that succeeds in the second its failure was reported is recovery.
STATUS_RANK = {
    PledgeStatus.PENDING: 0,
    PledgeStatus.PAST_DUE: 1,
    PledgeStatus.PAUSED: 1,
    PledgeStatus.ACTIVE: 2,
    PledgeStatus.CANCELED: 3,
    PledgeStatus.FAILED: 3,
}
FINAL_STATUSES = frozenset({PledgeStatus.CANCELED, PledgeStatus.FAILED})


@dataclass
class Context:
    """One unit of work: the session, Stripe to ask, and when Stripe says the news happened."""

    session: Session
    stripe: StripeReader
    event_at: datetime
    notify: bool = True
    changes: list[str] = field(default_factory=list)


def insert_ignoring_conflict(
    session: Session, model: type[Any], conflict_column: str, **values: Any
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: True when this call created the row."""
    statement = (
        insert(model)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[conflict_column])
        .returning(getattr(model, conflict_column))
    )
    return session.execute(statement).first() is not None


# ---- pledges -----------------------------------------------------------------------------


def locked_pledge(session: Session, **criteria: Any) -> Pledge | None:
    """The pledge, row-locked so concurrent events about it apply one after the other."""
    query = (
        select(Pledge)
        .filter_by(**criteria)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).one_or_none()


def pledge_for_subscription(
    ctx: Context, subscription_id: str, subscription: dict[str, Any] | None = None
) -> Pledge:
    """Our pledge for a subscription, adopting one created elsewhere from Stripe's state."""
    pledge = locked_pledge(ctx.session, stripe_subscription_id=subscription_id)
    if pledge is not None:
        return pledge
    fetched = subscription is None
    if subscription is None:
        try:
            subscription = ctx.stripe.subscription(subscription_id)
        except NotFoundInStripe:
            raise RetryLater(f"subscription {subscription_id} is not in Stripe yet") from None
    pledge = adopt_subscription(ctx, subscription)
    if fetched:
        # What Stripe says now is newer than any event: apply it as of now.
        apply_subscription_state(ctx, pledge, subscription, utcnow())
    return pledge


def adopt_subscription(ctx: Context, subscription: dict[str, Any]) -> Pledge:
    """The pledge a subscription belongs to: ours by metadata, or a new one (dashboard, import)."""
    session, subscription_id = ctx.session, str(subscription["id"])
    pledge_id = (subscription.get("metadata") or {}).get("pledge_id")
    if pledge_id:
        try:
            ours = session.get(Pledge, uuid.UUID(str(pledge_id)), with_for_update=True)
        except ValueError:
            ours = None
        if ours is not None and ours.stripe_subscription_id in (None, subscription_id):
            ours.stripe_subscription_id = subscription_id
            session.flush()
            return ours
    amount, currency, interval, plan_id = subscription_terms(subscription)
    customer_id = object_id(subscription.get("customer"))
    if customer_id is None:
        raise EventRejected(f"subscription {subscription_id} has no customer")
    reader = reader_for_customer(ctx, customer_id)
    now = utcnow()
    created = insert_ignoring_conflict(
        session, Pledge, "stripe_subscription_id",
        id=uuid.uuid4(), reader_id=reader.id, amount_minor=amount, fee_cover_minor=0,
        currency=currency, interval=interval, status=PledgeStatus.PENDING, cover_fees=False,
        locale=reader.locale, source="stripe", stripe_customer_id=customer_id,
        stripe_subscription_id=subscription_id, stripe_plan_id=plan_id,
        created_at=timestamp(subscription.get("created")) or now, updated_at=now,
    )  # fmt: skip
    pledge = locked_pledge(session, stripe_subscription_id=subscription_id)
    assert pledge is not None
    if created:
        ctx.changes.append(f"pledge {pledge.id}: adopted subscription {subscription_id}")
        outgoing.pledge_created(session, pledge=pledge)
    return pledge


def reader_for_customer(ctx: Context, customer_id: str) -> Reader:
    session = ctx.session
    reader = session.scalars(
        select(Reader).where(Reader.stripe_customer_id == customer_id)
    ).one_or_none()
    if reader is not None:
        return reader
    try:
        customer = ctx.stripe.customer(customer_id)
    except NotFoundInStripe:
        raise RetryLater(f"customer {customer_id} is not in Stripe yet") from None
    # Reader.email is required; a customer made in the dashboard without one still pledged.
    email = str(customer.get("email") or f"{customer_id}@stripe-customer.invalid").lower()
    locales = customer.get("preferred_locales") or []
    now = utcnow()
    insert_ignoring_conflict(
        session, Reader, "email",
        id=uuid.uuid4(), email=email, name=customer.get("name"),
        locale=locales[0] if locales else "en", created_at=now, updated_at=now,
    )  # fmt: skip
    reader = session.scalars(select(Reader).where(Reader.email == email)).one()
    if reader.stripe_customer_id is None:
        reader.stripe_customer_id = customer_id
    return reader


def may_move(pledge: Pledge, new_status: str, at: datetime) -> bool:
    """Whether news stamped `at` may set `new_status`: only newer news, and ends are final."""
    if pledge.status in FINAL_STATUSES:
        return False
    # Before any Stripe news, the confirm call's activation is the newest thing we know.
    known_at = pledge.stripe_state_at or pledge.activated_at
    if known_at is None or at > known_at:
        return True
    if at == known_at:
        return STATUS_RANK[PledgeStatus(new_status)] >= STATUS_RANK[PledgeStatus(pledge.status)]
    return False


def move_pledge(
    ctx: Context, pledge: Pledge, new_status: str, at: datetime, cancel_reason: str | None = None
) -> bool:
    """Set the status if the news is newer; notify on a real change only. True if it moved."""
    if not may_move(pledge, new_status, at):
        return False
    pledge.stripe_state_at = max(at, pledge.stripe_state_at or at)
    old_status = pledge.status
    if old_status == new_status:
        return False
    pledge.status = new_status
    ctx.changes.append(f"pledge {pledge.id}: {old_status} -> {new_status}")
    if new_status == PledgeStatus.ACTIVE:
        pledge.activated_at = pledge.activated_at or at
    if new_status == PledgeStatus.CANCELED:
        pledge.canceled_at = pledge.canceled_at or at
        pledge.cancel_reason = pledge.cancel_reason or cancel_reason
        if ctx.notify:
            notifications.pledge_canceled(
                ctx.session,
                reader=reader_of(ctx.session, pledge),
                pledge=pledge,
                after_failed_payments=old_status == PledgeStatus.PAST_DUE
                or cancel_reason == "payment_failed",
            )
    outgoing.pledge_moved(ctx.session, pledge=pledge, previous_status=old_status)
    return True


def apply_subscription_state(
    ctx: Context, pledge: Pledge, subscription: dict[str, Any], at: datetime
) -> None:
    new_status = status_of(subscription, at)
    if new_status is None or not may_move(pledge, new_status, at):
        return
    resumes_at = timestamp((subscription.get("pause_collection") or {}).get("resumes_at"))
    pledge.resumes_at = resumes_at if new_status == PledgeStatus.PAUSED else None
    amount, _currency, interval, plan_id = subscription_terms(subscription)
    previous_total, previous_interval = pledge.charged_minor, pledge.interval
    if interval != pledge.interval:
        ctx.changes.append(f"pledge {pledge.id}: every {pledge.interval} -> every {interval}")
        pledge.interval = interval
    if amount != pledge.charged_minor:
        # The reader changed the amount (in Stripe): the fee cover is no longer known.
        ctx.changes.append(f"pledge {pledge.id}: amount {pledge.charged_minor} -> {amount}")
        pledge.amount_minor, pledge.fee_cover_minor, pledge.stripe_plan_id = amount, 0, plan_id
    if (previous_total, previous_interval) != (pledge.charged_minor, pledge.interval):
        outgoing.pledge_amount_changed(
            ctx.session, pledge=pledge, previous_total_amount=previous_total,
            previous_interval=previous_interval,
        )  # fmt: skip
    period_end = subscription_period_end(subscription)
    if period_end is not None and period_end != pledge.current_period_end:
        pledge.current_period_end = period_end
    reason = (subscription.get("cancellation_details") or {}).get("reason")
    move_pledge(ctx, pledge, new_status, at, cancel_reason=reason)


def status_of(subscription: dict[str, Any], at: datetime | None = None) -> PledgeStatus | None:
    """Our word for the subscription's state at `at`; collection paused by the reader is a pause.

    Stripe resumes collection by itself at `pause_collection.resumes_at`, so from that moment
    on the subscription is active again, whether or not its update has reached us yet.
    """
    status = STATUS_FROM_STRIPE.get(str(subscription.get("status")))
    pause = subscription.get("pause_collection")
    if status == PledgeStatus.ACTIVE and pause:
        resumes_at = timestamp(pause.get("resumes_at"))
        if resumes_at is None or at is None or resumes_at > at:
            return PledgeStatus.PAUSED
    return status


def reader_of(session: Session, pledge: Pledge) -> Reader:
    reader = session.get(Reader, pledge.reader_id)
    assert reader is not None
    return reader
