"""Applying one stored event to the ledger: exactly once, under a lock on its inbox row."""

from dataclasses import dataclass

import structlog
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from billing.db import session_scope, utcnow
from billing.models import StripeEvent
from billing.stripe_gateway import GatewayError, StripeReader, get_stripe_reader
from webhooks.errors import EventRejected, RetryLater
from webhooks.handlers import HANDLERS
from webhooks.inbox import FAILED, HANDLED, IGNORED, PENDING
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
    except (EventRejected, DBAPIError, KeyError, TypeError, ValueError) as error:
        # The event itself cannot be applied: keep it visible instead of retrying forever.
        message = f"{type(error).__name__}: {error}"
        record_error(event_id, message, final=True)
        log.warning("stripe_event_failed", event_id=event_id, error=message)
        return Outcome(FAILED, error=message)


def record_error(event_id: int, message: str, *, final: bool) -> None:
    """Note the failed attempt; a final one leaves the event failed for an operator."""
    values: dict[str, object] = {"last_error": message[:2000]}
    if final:
        values["status"] = FAILED
    with session_scope() as session:
        session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == event_id, StripeEvent.status == PENDING)
            .values(attempts=StripeEvent.attempts + 1, **values)
        )


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
        record_error(event_id, message, final=False)
        return Outcome(PENDING, error=message)
