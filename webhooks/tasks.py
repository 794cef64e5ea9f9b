"""Celery tasks: process a stored event with retries, and sweep up events whose task was lost."""

from datetime import timedelta

import structlog

from billing.db import session_scope
from billing.settings import get_settings
from billing.task_queue import send_task
from webhooks import processing
from webhooks.inbox import FAILED, PROCESS_TASK, unprocessed_event_ids
from workers.celery_app import app

log = structlog.get_logger()


def retry_delay(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: doubling from the base, capped at half an hour."""
    return float(min(get_settings().webhook_retry_base_seconds * 2**attempt, 1800))


@app.task(name=PROCESS_TASK, bind=True, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
def process_event(self: object, event_id: int) -> str:
    try:
        return processing.process(event_id).status
    except processing.TRANSIENT_ERRORS as error:
        attempt = int(getattr(self, "request").retries)  # noqa: B009
        final = attempt + 1 >= get_settings().webhook_max_attempts
        processing.record_error(event_id, f"{type(error).__name__}: {error}", final=final)
        if final:
            log.warning("stripe_event_gave_up", event_id=event_id, error=str(error))
            return FAILED
        raise getattr(self, "retry")(exc=error, countdown=retry_delay(attempt)) from error  # noqa: B009


@app.task(name="webhooks.sweep_events", acks_late=True)  # type: ignore[untyped-decorator]
def sweep_events() -> int:
    """Re-send stored events that were never attempted (the broker was down, a worker died)."""
    older_than = timedelta(seconds=get_settings().webhook_sweep_after_seconds)
    with session_scope() as session:
        event_ids = unprocessed_event_ids(session, older_than)
    for event_id in event_ids:
        send_task(PROCESS_TASK, event_id)
    if event_ids:
        log.info("stripe_events_swept", count=len(event_ids))
    return len(event_ids)
