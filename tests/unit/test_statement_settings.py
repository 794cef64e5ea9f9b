"""Fiscal years and the statement mail's schedule, from FISCAL_YEAR_START and STATEMENTS_SEND_ON."""

from datetime import date

import pytest
from pydantic import ValidationError

from billing.settings import Settings
from billing.statements.fiscal import fiscal_year, fiscal_year_containing, is_complete


@pytest.mark.parametrize("value", ["1-1", "13-01", "02-29", "04-31", "April 6", ""])
def test_fiscal_year_start_must_be_a_day_every_year_has(value: str) -> None:
    with pytest.raises(ValidationError, match="FISCAL_YEAR_START"):
        Settings(_env_file=None, fiscal_year_start=value)


def test_statements_send_on_is_off_unless_set() -> None:
    assert Settings(_env_file=None).statements_send_on is None
    assert Settings(_env_file=None, statements_send_on="01-15").statements_send_on == "01-15"
    with pytest.raises(ValidationError, match="STATEMENTS_SEND_ON"):
        Settings(_env_file=None, statements_send_on="15-01")


def test_a_fiscal_year_is_named_for_the_year_it_starts_in() -> None:
    uk = fiscal_year(2026, "04-06", "Europe/London")

    assert (uk.first_day, uk.last_day, uk.label) == (date(2026, 4, 6), date(2027, 4, 5), "2026/27")
    assert fiscal_year_containing(date(2027, 4, 5), "04-06", "UTC").year == 2026
    assert fiscal_year_containing(date(2027, 4, 6), "04-06", "UTC").year == 2027
    assert fiscal_year(2026, "01-01", "UTC").label == "2026"
    # Midnight in the reporting time zone, as the finance reports count days.
    assert uk.start_at.isoformat() == "2026-04-06T00:00:00+01:00"


def test_only_a_finished_year_is_complete() -> None:
    year = fiscal_year(2026, "01-01", "UTC")

    assert not is_complete(year, date(2026, 12, 31))
    assert is_complete(year, date(2027, 1, 1))


def test_the_beat_job_is_scheduled_only_with_statements_send_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing.db import reset_caches
    from workers.celery_app import app, create_celery

    reset_caches()
    try:
        assert "send-due-statements" not in create_celery().conf.beat_schedule
        monkeypatch.setenv("STATEMENTS_SEND_ON", "01-15")
        reset_caches()
        schedule = create_celery().conf.beat_schedule
    finally:
        monkeypatch.undo()
        reset_caches()
        app.set_current()  # a new Celery app makes itself current; give the worker's back
    assert schedule["send-due-statements"]["task"] == "workers.statements.send_due_statements"
