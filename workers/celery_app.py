"""The Celery application: broker from settings, at-least-once delivery, the beat schedule."""

from celery import Celery
from celery.schedules import crontab

from billing.settings import get_settings
from billing.task_queue import broker_transport_options

# Modules whose tasks the worker registers; each names its tasks explicitly.
TASK_MODULES: list[str] = [
    "webhooks.tasks", "workers.emails", "workers.dunning", "workers.reconcile",
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
            "send-due-reminders": {
                "task": "workers.dunning.send_due_reminders",
                "schedule": 15 * 60.0,
            },
            # Nightly, after Stripe's own day has settled.
            "reconcile-drift-check": {
                "task": "workers.reconcile.drift_check",
                "schedule": crontab(hour=3, minute=17),
            },
        },
    )
    return celery


app = create_celery()
