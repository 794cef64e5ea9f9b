"""Celery tasks: process a stored event with retries, and sweep up events whose task was lost."""

from datetime import timedelta

import structlog
from celery import Task

from billing.db import session_scope
from billing.settings import get_settings
from billing.task_queue import send_task
from webhooks import processing
from webhooks.inbox import PENDING, PROCESS_TASK, unprocessed_event_ids
from workers.celery_app import app

log = structlog.get_logger()


def retry_delay(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: doubling from the base, capped at half an hour."""
    return float(min(get_settings().webhook_retry_base_seconds * 2**attempt, 1800))


@app.task(name=PROCESS_TASK, bind=True, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
def process_event(task: Task, event_id: int) -> str:
    """Apply the event; on a transient error retry with backoff until the stored attempts
    reach the limit, then leave it failed."""
    try:
        return processing.process(event_id).status
    except processing.TRANSIENT_ERRORS as error:
        message = f"{type(error).__name__}: {error}"
        attempts, status = processing.record_error(
            event_id, message, give_up_at=get_settings().webhook_max_attempts
        )
        if status != PENDING:
            log.warning("stripe_event_gave_up", event_id=event_id, error=message)
            return status
        raise task.retry(exc=error, countdown=retry_delay(attempts - 1)) from error


@app.task(name="webhooks.sweep_events", acks_late=True)  # type: ignore[untyped-decorator]
def sweep_events() -> int:
    """Re-send stored events that were never attempted (the broker was down, a worker died)."""
    settings = get_settings()
    older_than = timedelta(seconds=settings.webhook_sweep_after_seconds)
    # Retries wait in the broker; only once all of them (and Redis's one-hour redelivery of a
    # dead worker's tasks) should be over is a still-pending event taken as lost.
    retry_window = sum(retry_delay(attempt) for attempt in range(settings.webhook_max_attempts))
    stuck_after = timedelta(seconds=retry_window + 3600)
    with session_scope() as session:
        event_ids = unprocessed_event_ids(session, older_than, stuck_after)
    for event_id in event_ids:
        send_task(PROCESS_TASK, event_id)
    if event_ids:
        log.info("stripe_events_swept", count=len(event_ids))
    return len(event_ids)
