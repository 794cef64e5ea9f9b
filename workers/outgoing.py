"""Delivering outgoing webhooks: claim a delivery, sign it, POST it, record what came back.

At least once: a delivery is claimed under a lease (`OUTGOING_WEBHOOK_LEASE_SECONDS`); if the
worker dies mid-request, the sweep hands it out again once the lease runs out, with the same
`webhook-id` so the receiver can drop the copy. A 2xx ends it; anything else retries with
exponential backoff until OUTGOING_WEBHOOK_MAX_ATTEMPTS, then the endpoint is disabled and the
admins are mailed. Deliveries about one reader go to an endpoint one after the other.
"""

from dataclasses import dataclass
from datetime import timedelta

import structlog
from celery import Task
from sqlalchemy.orm import Session

from billing.db import session_scope, utcnow
from billing.endpoints import network, queries
from billing.endpoints.events import DELIVER_TASK
from billing.endpoints.service import envelope, give_up, retry_delay
from billing.endpoints.signing import signed_headers
from billing.models import OutgoingEvent, WebhookEndpoint
from billing.settings import Settings, get_settings
from billing.task_queue import enqueue_after_commit, send_task
from workers.celery_app import app

log = structlog.get_logger()

SWEEP_TASK = "workers.outgoing.sweep_deliveries"
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 1000
# Longer waits are left to the sweep: a Redis broker redelivers a task held past its visibility
# timeout (3600 s), which would wake the delivery early and twice.
MAX_COUNTDOWN_SECONDS = 1800.0


@dataclass(frozen=True)
class Attempt:
    """What one attempt did: delivered, skipped (not due, not first in line), retry or failed."""

    outcome: str
    retry_in: float | None = None


# celery ships no type hints, hence the ignores on its decorators.
@app.task(name=DELIVER_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def deliver(self: Task, delivery_id: int) -> str:
    attempt = attempt_delivery(delivery_id)
    if attempt.retry_in is not None and attempt.retry_in <= MAX_COUNTDOWN_SECONDS:
        # The row already says when; this only wakes a worker then.
        raise self.retry(countdown=attempt.retry_in, max_retries=None)
    return attempt.outcome


@app.task(name=SWEEP_TASK)  # type: ignore[untyped-decorator]
def sweep_deliveries() -> int:
    """Re-enqueue deliveries whose task was lost or whose worker died (lease run out)."""
    with session_scope() as session:
        ids = queries.due_delivery_ids(session, grace=SWEEP_GRACE, limit=SWEEP_BATCH)
    for delivery_id in ids:
        send_task(DELIVER_TASK, delivery_id)
    if ids:
        log.info("deliveries_swept", count=len(ids))
    return len(ids)


def attempt_delivery(delivery_id: int) -> Attempt:
    settings = get_settings()
    with session_scope() as session:
        row = queries.claim(
            session, delivery_id, lease_seconds=settings.outgoing_webhook_lease_seconds
        )
        if row is None:
            return Attempt("skipped")
        attempts = row.attempts
        endpoint = session.get_one(WebhookEndpoint, row.endpoint_id)
        if attempts > settings.outgoing_webhook_max_attempts:
            # Claimed this often without an outcome: every attempt died mid-request.
            return _finish(
                session, settings, row_id=delivery_id, attempts=attempts, answer=None,
                error=f"no outcome after {attempts - 1} attempts", give_up_now=True,
            )  # fmt: skip
        event = session.get_one(OutgoingEvent, row.event_id)
        body = envelope(session, event=event, endpoint=endpoint)
        headers = signed_headers(endpoint, message_id=event.event_id, body=body, now=utcnow())
        url = endpoint.url
    # No transaction stays open while the endpoint thinks.
    answer: network.Answer | None = None
    error: str | None = None
    refused = False
    try:
        answer = network.post(
            url, body.encode(), headers, allow_private=settings.outgoing_webhook_allow_private
        )
    except network.RefusedAddress as refusal:
        # The name now resolves to a private address: retrying will not make it safe.
        error, refused = str(refusal), True
    except network.DeliveryError as failure:
        error = str(failure)
    with session_scope() as session:
        return _finish(
            session, settings, row_id=delivery_id, attempts=attempts, answer=answer, error=error,
            give_up_now=refused,
        )  # fmt: skip


def _finish(
    session: Session,
    settings: Settings,
    *,
    row_id: int,
    attempts: int,
    answer: network.Answer | None,
    error: str | None,
    give_up_now: bool,
) -> Attempt:
    row = queries.locked_delivery(session, row_id)
    if row is None or row.status != "delivering" or row.attempts != attempts:
        return Attempt("skipped")  # removed, or taken over after our lease ran out
    now = utcnow()
    row.last_attempt_at, row.updated_at = now, now
    if answer is not None:
        row.last_status_code, row.last_duration_ms = answer.status_code, answer.duration_ms
        row.last_response = answer.body_start.decode("utf-8", "replace")
        row.last_error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
    else:
        row.last_status_code, row.last_duration_ms, row.last_response = None, None, None
        row.last_error = (error or "unknown error")[:2000]
    if answer is not None and 200 <= answer.status_code < 300:
        row.status, row.delivered_at = "succeeded", now
        outcome = Attempt("delivered")
    elif give_up_now or attempts >= settings.outgoing_webhook_max_attempts:
        row.status = "failed"
        endpoint = session.get_one(WebhookEndpoint, row.endpoint_id, with_for_update=True)
        reason = f"delivery {row.id} failed {attempts} time(s); last: {row.last_error}"
        give_up(session, settings, endpoint=endpoint, reason=reason)
        outcome = Attempt("failed")
    else:
        delay = retry_delay(attempts, settings)
        row.status, row.next_attempt_at = "pending", now + timedelta(seconds=delay)
        log.warning(
            "delivery_retry", delivery_id=row.id, endpoint_id=row.endpoint_id,
            attempts=attempts, error=row.last_error,
        )  # fmt: skip
        return Attempt("retry", retry_in=delay)
    following = queries.next_in_line(session, endpoint_id=row.endpoint_id, reader_id=row.reader_id)
    if following is not None:
        enqueue_after_commit(session, DELIVER_TASK, following)
    return outcome
