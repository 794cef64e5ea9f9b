"""Applying one stored event to the ledger: exactly once, under a lock on its inbox row."""

from dataclasses import dataclass

import structlog
from sqlalchemy import case, update
from sqlalchemy.exc import IntegrityError, OperationalError

from billing.db import session_scope, utcnow
from billing.models import StripeEvent
from billing.settings import get_settings
from billing.stripe_gateway import GatewayError, StripeReader, get_stripe_reader
from billing.task_queue import send_task
from webhooks.errors import RetryLater
from webhooks.handlers import HANDLERS
from webhooks.inbox import FAILED, HANDLED, IGNORED, PENDING, PROCESS_TASK
from webhooks.ledger import Context
from webhooks.shapes import timestamp

log = structlog.get_logger()
# Worth another try: Stripe unreachable or not caught up, the database briefly away, or a
# concurrent writer that won a unique-constraint race (the retry sees its row).
TRANSIENT_ERRORS = (RetryLater, GatewayError, OperationalError, IntegrityError)


@dataclass(frozen=True)
class Outcome:
    status: str
    changes: tuple[str, ...] = ()
    error: str | None = None


def process(event_id: int, stripe: StripeReader | None = None, notify: bool = True) -> Outcome:
    """Run the handler for the event once; transient errors propagate for the caller to retry.

    The inbox row is locked for the whole run, so two workers given the same event take turns
    and the second finds it handled.
    """
    try:
        with session_scope() as session:
            row = session.get(StripeEvent, event_id, with_for_update=True)
            if row is None:
                return Outcome("missing")
            if row.status != PENDING:
                return Outcome(row.status, error=row.last_error)
            handler = HANDLERS.get(row.type)
            row.attempts += 1
            if handler is None:
                row.status, row.handled_at = IGNORED, utcnow()
                return Outcome(IGNORED)
            event_at = timestamp(row.payload["created"])
            assert event_at is not None
            ctx = Context(session, stripe or get_stripe_reader(), event_at, notify=notify)
            handler(ctx, row.payload["data"]["object"])
            row.status, row.handled_at, row.last_error = HANDLED, utcnow(), None
            outcome = Outcome(HANDLED, tuple(ctx.changes))
        log.info("stripe_event_handled", event_id=event_id, changes=len(outcome.changes))
        return outcome
    except TRANSIENT_ERRORS:
        raise
    except Exception as error:
        # The event cannot be applied as it is (it contradicts the ledger, or a handler bug):
        # keep it visible to an operator instead of retrying it forever.
        message = f"{type(error).__name__}: {error}"
        record_error(event_id, message, give_up_at=0)
        log.warning("stripe_event_failed", event_id=event_id, error=message)
        return Outcome(FAILED, error=message)


def record_error(event_id: int, message: str, *, give_up_at: int) -> tuple[int, str]:
    """Count the failed attempt; once `give_up_at` attempts are reached the event is left
    failed for an operator. Returns the (attempts, status) now stored."""
    attempts = StripeEvent.attempts + 1
    with session_scope() as session:
        row = session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == event_id, StripeEvent.status == PENDING)
            .values(
                attempts=attempts,
                last_error=message[:2000],
                status=case((attempts >= give_up_at, FAILED), else_=PENDING),
            )
            .returning(StripeEvent.attempts, StripeEvent.status)
        ).first()
    return (row.attempts, row.status) if row is not None else (0, "missing")


def replay(event_id: int, stripe: StripeReader | None = None) -> Outcome:
    """Run a stored event again now, whatever happened to it before (an operator's decision).

    Replaying a handled event is safe: every ledger write is keyed by Stripe's ids.
    """
    with session_scope() as session:
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == event_id)
            .values(status=PENDING, attempts=0, handled_at=None)
        )
    try:
        return process(event_id, stripe)
    except TRANSIENT_ERRORS as error:
        message = f"{type(error).__name__}: {error}"
        _attempts, status = record_error(
            event_id, message, give_up_at=get_settings().webhook_max_attempts
        )
        if status == PENDING:
            # Leave it to the worker's retries, as if it had come in through the webhook.
            enqueue_now(event_id)
        return Outcome(status, error=message)


def enqueue_now(event_id: int) -> None:
    try:
        send_task(PROCESS_TASK, event_id)
    except Exception:  # the broker is down: the sweep sends it once the broker is back
        log.warning("task_send_failed", task=PROCESS_TASK, event_id=event_id)
