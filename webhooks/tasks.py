"""Celery tasks: drain the inbox in batches, process one event with retries, sweep lost ones."""

from datetime import timedelta

import structlog
from celery import Task

from billing.db import session_scope
from billing.settings import get_settings
from billing.task_queue import send_task
from webhooks import processing
from webhooks.inbox import DRAIN_TASK, PENDING, PROCESS_TASK, unprocessed_event_ids
from webhooks.processing import retry_delay
from workers.celery_app import app

log = structlog.get_logger()
__all__ = ["drain_inbox", "process_event", "retry_delay", "sweep_events"]


@app.task(name=DRAIN_TASK, acks_late=True)  # type: ignore[untyped-decorator]
def drain_inbox() -> int:
    """Apply pending events batch after batch until none is due; how many were claimed.

    Any number of these run at once, in threads and processes: each claim skips rows another
    holds. One wake-up stands for many events, so a lost one costs nothing but a delay until
    the next wake-up or the sweep.
    """
    batch_size = get_settings().webhook_batch_size
    claimed, retry_in = 0, None
    while True:
        batch = processing.process_batch(batch_size)
        if batch.claimed == batch_size and claimed == 0:
            # A backlog: ask one more idle thread or process to join (which may ask another).
            send_task(DRAIN_TASK)
        claimed += batch.claimed
        if batch.retry_in is not None:
            retry_in = batch.retry_in if retry_in is None else min(retry_in, batch.retry_in)
        if batch.claimed < batch_size:
            break
    if retry_in is not None:
        # Wake a worker when the soonest retry is due; the sweep covers a lost wake-up.
        send_task(DRAIN_TASK, countdown=retry_in)
    return claimed


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
    """Wake a drain for stored events never attempted (the broker was down, a worker died)."""
    settings = get_settings()
    older_than = timedelta(seconds=settings.webhook_sweep_after_seconds)
    # Retries wait in the broker; only once all of them (and Redis's one-hour redelivery of a
    # dead worker's tasks) should be over is a still-pending event taken as lost.
    retry_window = sum(retry_delay(attempt) for attempt in range(settings.webhook_max_attempts))
    stuck_after = timedelta(seconds=retry_window + 3600)
    with session_scope() as session:
        event_ids = unprocessed_event_ids(session, older_than, stuck_after)
    if event_ids:
        # A drain claims every due pending event, these among them.
        send_task(DRAIN_TASK)
        log.info("stripe_events_swept", count=len(event_ids))
    return len(event_ids)
