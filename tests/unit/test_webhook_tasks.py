"""The worker knows the webhook tasks, beat sweeps every minute, and retries back off."""

import pytest

from webhooks.tasks import retry_delay
from workers.celery_app import app


def test_worker_registers_the_webhook_tasks_and_beat_sweeps_every_minute() -> None:
    app.loader.import_default_modules()

    assert {"webhooks.process_event", "webhooks.sweep_events"} <= set(app.tasks)
    sweep = [e for e in app.conf.beat_schedule.values() if e["task"] == "webhooks.sweep_events"]
    assert [entry["schedule"] for entry in sweep] == [60.0]


@pytest.mark.parametrize(("attempt", "delay"), [(0, 10), (1, 20), (3, 80), (12, 1800)])
def test_retry_delay_doubles_from_the_base_and_is_capped(attempt: int, delay: float) -> None:
    assert retry_delay(attempt) == delay
