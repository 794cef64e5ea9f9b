"""Paused and skipped pledges coming back: the ledger follows Stripe's `resumes_at`, and the
reader hears a week before.

Stripe resumes collection by itself at `pause_collection.resumes_at` and then sends
`customer.subscription.updated`; this job does not wait for that event. For every paused pledge
whose date has come it reads the subscription from Stripe and applies it as of now, so the
ledger never says "paused" after Stripe started charging again, and never says "active" while
Stripe still holds the pause (a pause the reader extended in the meantime, say).
"""

from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import session_scope, utcnow
from billing.models import Pledge, PledgeStatus
from billing.outbox import SEND_EMAIL_TASK, queue_email
from billing.stripe_gateway import GatewayError, NotFoundInStripe, StripeReader, get_stripe_reader
from billing.task_queue import enqueue_after_commit
from webhooks.ledger import Context, apply_subscription_state, reader_of
from workers.celery_app import app

log = structlog.get_logger()
NOTICE_BEFORE = timedelta(days=7)
BATCH = 200


@app.task(name="workers.pauses.follow_pauses")  # type: ignore[untyped-decorator]
def follow_pauses() -> tuple[int, int]:
    """(pledges resumed, notices queued); safe to run at any moment, any number of times."""
    now = utcnow()
    with session_scope() as session:
        resumed = resume_due(session, get_stripe_reader(), now)
    with session_scope() as session:
        noticed = queue_resume_notices(session, now)
    return resumed, noticed


def resume_due(session: Session, stripe: StripeReader, now: datetime) -> int:
    due = session.scalars(
        select(Pledge)
        .where(
            Pledge.status == PledgeStatus.PAUSED,
            Pledge.resumes_at <= now,
            Pledge.stripe_subscription_id.is_not(None),
        )
        .order_by(Pledge.resumes_at)
        .limit(BATCH)
        # Another run, or a webhook about the same pledge, holds it: that one decides.
        .with_for_update(skip_locked=True)
    ).all()
    ctx = Context(session, stripe, event_at=now)
    for pledge in due:
        assert pledge.stripe_subscription_id is not None
        try:
            subscription = stripe.subscription(pledge.stripe_subscription_id)
        except (NotFoundInStripe, GatewayError) as error:
            log.warning("pause_not_followed", pledge_id=str(pledge.id), error=str(error))
            continue
        apply_subscription_state(ctx, pledge, subscription, now)
    resumed = sum(1 for pledge in due if pledge.status == PledgeStatus.ACTIVE)
    if resumed:
        log.info("pledges_resumed", count=resumed)
    return resumed


def queue_resume_notices(session: Session, now: datetime) -> int:
    """One mail a week before a pause ends, keyed by the pledge and the date it resumes."""
    coming = session.scalars(
        select(Pledge).where(
            Pledge.status == PledgeStatus.PAUSED,
            Pledge.resumes_at > now,
            Pledge.resumes_at <= now + NOTICE_BEFORE,
        )
    ).all()
    queued = 0
    for pledge in coming:
        assert pledge.resumes_at is not None
        reader = reader_of(session, pledge)
        if reader.erased_at is not None:
            continue
        key = f"resuming:{pledge.id}:{pledge.resumes_at.date().isoformat()}"
        context = {"resumes_at": pledge.resumes_at.isoformat()}
        if queue_email(
            session, dedupe_key=key, template="resuming", to_email=reader.email,
            locale=pledge.locale, context=context, pledge_id=pledge.id,
        ):  # fmt: skip
            enqueue_after_commit(session, SEND_EMAIL_TASK, key)
            queued += 1
    return queued
