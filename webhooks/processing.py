"""Applying stored events to the ledger: exactly once, under a lock on each inbox row.

Workers take pending rows in batches (`process_batch`): one transaction claims up to
WEBHOOK_BATCH_SIZE rows with FOR UPDATE SKIP LOCKED, applies each under its own savepoint (one
bad event does not undo the others) and commits once. `process` runs a single event by id, for
operators' replays and tasks queued one per event.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from billing.db import session_scope, utcnow
from billing.manage.data_rights import scrub_all_erased
from billing.models import StripeEvent
from billing.settings import Settings, get_settings
from billing.stripe_gateway import GatewayError, StripeReader, get_stripe_reader
from billing.task_queue import send_task
from webhooks import renewals
from webhooks.errors import RetryLater
from webhooks.handlers import HANDLERS
from webhooks.inbox import FAILED, HANDLED, IGNORED, PENDING, PROCESS_TASK
from webhooks.ledger import Context
from webhooks.shapes import invoice_subscription_id, timestamp

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
    with session_scope() as session:
        row = session.get(StripeEvent, event_id, with_for_update=True)
        if row is not None:
            _scrub_if_erased(session, [row])
    try:
        with session_scope() as session:
            row = session.get(StripeEvent, event_id, with_for_update=True)
            if row is None:
                return Outcome("missing")
            if row.status != PENDING:
                return Outcome(row.status, error=row.last_error)
            outcome = _apply(session, row, stripe or get_stripe_reader(), notify)
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


def _apply(session: Session, row: StripeEvent, stripe: StripeReader, notify: bool) -> Outcome:
    """Run the row's handler in `session`, which holds the row locked; errors propagate."""
    handler = HANDLERS.get(row.type)
    if handler is None:
        row.attempts += 1
        row.status, row.handled_at = IGNORED, utcnow()
        return Outcome(IGNORED)
    event_at = timestamp(row.payload["created"])
    assert event_at is not None
    ctx = Context(session, stripe, event_at, notify=notify)
    handler(ctx, row.payload["data"]["object"])
    _handled(row)
    return Outcome(HANDLED, tuple(ctx.changes))


def _handled(row: StripeEvent) -> None:
    row.attempts += 1
    row.status, row.handled_at, row.last_error, row.run_after = HANDLED, utcnow(), None, None


@dataclass(frozen=True)
class Batch:
    """What one claim did: how many events it took, and when the soonest retry is due."""

    claimed: int
    retry_in: float | None = None


def process_batch(limit: int, stripe: StripeReader | None = None) -> Batch:
    """Claim up to `limit` due pending events and apply them in one transaction.

    Rows are locked until the commit, so another worker's claim skips them and a killed
    worker's batch rolls back whole, to be claimed again. A transient error puts only that
    event back with a later `run_after` (or leaves it failed past WEBHOOK_MAX_ATTEMPTS).
    """
    settings = get_settings()
    reader = stripe or get_stripe_reader()
    retry_in: float | None = None
    with session_scope() as session:
        now = utcnow()
        rows = session.scalars(
            select(StripeEvent)
            .where(
                StripeEvent.status == PENDING,
                or_(StripeEvent.run_after.is_(None), StripeEvent.run_after <= now),
            )
            .order_by(StripeEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        # Pledges are row-locked as events apply: taking them in one global order (by
        # subscription, then arrival) keeps concurrent batches from deadlocking each other.
        rows = sorted(rows, key=_lock_order)
        _scrub_if_erased(session, rows)
        try:
            # The common case, every event applies: one savepoint for the whole batch, and
            # plain renewals (most of a busy day) written set-wise.
            with session.begin_nested():
                applied, left = renewals.apply(session, rows, reader)
                for row in applied:
                    _handled(row)
                for row in left:
                    _apply(session, row, reader, notify=True)
        except Exception:
            # Back to the claim (the rows stay locked), then one savepoint per event, so only
            # the event that failed is retried or left failed.
            retry_in = _apply_one_by_one(session, rows, reader, settings)
    if rows:
        log.info("stripe_events_handled", count=len(rows))
    return Batch(len(rows), retry_in)


def _scrub_if_erased(session: Session, rows: Sequence[StripeEvent]) -> None:
    """The route stores fast, without looking readers up: news of an erased reader (a late
    invoice, the customer's deletion) loses their email and name here, before any handler reads
    it, and outside the handlers' savepoints, so a failing handler does not bring it back."""
    payloads = scrub_all_erased(session, [row.payload for row in rows])
    for row, payload in zip(rows, payloads, strict=True):
        if payload is not row.payload:
            row.payload = payload


def _lock_order(row: StripeEvent) -> tuple[str, int]:
    stripe_object: dict[str, Any] = row.payload["data"]["object"]
    kind = stripe_object.get("object")
    if kind == "subscription":
        return str(stripe_object.get("id") or ""), row.id
    if kind == "invoice":
        return invoice_subscription_id(stripe_object) or "", row.id
    return "", row.id


def _apply_one_by_one(
    session: Session, rows: Sequence[StripeEvent], reader: StripeReader, settings: Settings
) -> float | None:
    """Apply each row under its own savepoint; seconds until the soonest retry is due."""
    retry_in: float | None = None
    for row in rows:
        try:
            with session.begin_nested():
                _apply(session, row, reader, notify=True)
        except TRANSIENT_ERRORS as error:
            delay = _retry_later(row, f"{type(error).__name__}: {error}", settings)
            if delay is not None:
                retry_in = delay if retry_in is None else min(retry_in, delay)
        except Exception as error:
            # As in `process`: an event the ledger cannot take waits for an operator.
            row.attempts += 1
            row.status, row.last_error = FAILED, f"{type(error).__name__}: {error}"[:2000]
            log.warning("stripe_event_failed", event_id=row.id, error=row.last_error)
    return retry_in


def _retry_later(row: StripeEvent, message: str, settings: Settings) -> float | None:
    """Count the failed attempt on `row`; seconds until it is due again, None if given up."""
    row.attempts += 1
    row.last_error = message[:2000]
    if row.attempts >= settings.webhook_max_attempts:
        row.status = FAILED
        log.warning("stripe_event_gave_up", event_id=row.id, error=message)
        return None
    delay = retry_delay(row.attempts - 1)
    row.run_after = utcnow() + timedelta(seconds=delay)
    log.info("stripe_event_retry", event_id=row.id, attempts=row.attempts, error=message[:200])
    return delay


def retry_delay(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: doubling from the base, capped at half an hour."""
    return float(min(get_settings().webhook_retry_base_seconds * 2**attempt, 1800))


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
