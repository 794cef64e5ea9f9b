"""The worker's configuration: what it runs, when, and how it treats a task it may lose."""

from billing.notifications import SEND_EMAIL_TASK
from billing.settings import get_settings
from workers.celery_app import TASK_MODULES, app


def registered_tasks() -> set[str]:
    app.loader.import_default_modules()
    for module in TASK_MODULES:
        __import__(module)
    return set(app.tasks)


def test_every_periodic_job_names_a_task_the_worker_registers() -> None:
    tasks = registered_tasks()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}

    assert {"workers.emails.sweep_outbox", "workers.dunning.send_due_reminders"} <= scheduled
    assert scheduled <= tasks
    assert SEND_EMAIL_TASK in tasks


def test_a_task_is_acknowledged_only_after_it_ran_and_requeued_if_its_worker_dies() -> None:
    registered_tasks()
    send_email = app.tasks[SEND_EMAIL_TASK]

    assert send_email.acks_late and send_email.reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    # Longer than the longest retry delay, so Redis never hands out a waiting retry twice.
    # (Transports without a visibility timeout never hand a waiting task out early.)
    visibility_timeout = app.conf.broker_transport_options.get("visibility_timeout", float("inf"))
    assert visibility_timeout > get_settings().email_retry_max_seconds
