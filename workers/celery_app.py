"""The Celery application: broker from settings, at-least-once delivery, the beat schedule."""

from typing import Any

import structlog
from celery import Celery
from celery.schedules import crontab
from celery.signals import after_setup_logger, worker_ready

from billing.logs import configure_logging
from billing.settings import get_settings
from billing.task_queue import broker_transport_options, send_task

# The inbox's wake-up task, by name (webhooks.inbox.DRAIN_TASK; workers must not import it
# before the app exists, as webhooks.tasks imports this module).
DRAIN_TASK = "webhooks.drain_inbox"
log = structlog.get_logger()

# Modules whose tasks the worker registers; each names its tasks explicitly.
TASK_MODULES: list[str] = [
    "webhooks.tasks", "workers.emails", "workers.dunning", "workers.outgoing",
    "workers.statements", "workers.pauses", "workers.card_expiry", "workers.reconcile",
]  # fmt: skip


def create_celery() -> Celery:
    settings = get_settings()
    celery = Celery("pledges", broker=settings.celery_broker_url, include=TASK_MODULES)
    celery.conf.update(
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings.celery_broker_url),
        beat_schedule={
            "webhooks-sweep-events": {"task": "webhooks.sweep_events", "schedule": 60.0},
            "sweep-email-outbox": {"task": "workers.emails.sweep_outbox", "schedule": 60.0},
            "sweep-webhook-deliveries": {
                "task": "workers.outgoing.sweep_deliveries",
                "schedule": 60.0,
            },
            "send-due-reminders": {
                "task": "workers.dunning.send_due_reminders",
                "schedule": 15 * 60.0,
            },
            # Hourly: a pause ends at a moment of the day, not at midnight.
            "follow-pauses": {"task": "workers.pauses.follow_pauses", "schedule": 60 * 60.0},
            "warn-expiring-cards": {
                "task": "workers.card_expiry.warn_expiring_cards",
                "schedule": 6 * 60 * 60.0,
            },
            # Nightly, after Stripe's own day has settled.
            "reconcile-drift-check": {
                "task": "workers.reconcile.drift_check",
                "schedule": crontab(hour=3, minute=17),
            },
        },
    )
    if settings.statements_send_on:
        # Off unless STATEMENTS_SEND_ON is set; hourly, so the day is caught in any time zone.
        celery.conf.beat_schedule["send-due-statements"] = {
            "task": "workers.statements.send_due_statements",
            "schedule": 3600.0,
        }
    return celery


def _structured_redacted_logs(**_kwargs: Any) -> None:
    # Celery has installed its handlers by now; this adds JSON and redaction on top of them.
    configure_logging()


after_setup_logger.connect(_structured_redacted_logs, weak=False)


app = create_celery()


@worker_ready.connect  # type: ignore[untyped-decorator]
def drain_on_start(**_kwargs: object) -> None:
    """A worker that starts (or restarts after a crash) takes the backlog at once."""
    try:
        send_task(DRAIN_TASK)
    except Exception:  # the broker is down: the sweep wakes a drain once it is back
        log.warning("task_send_failed", task=DRAIN_TASK)
