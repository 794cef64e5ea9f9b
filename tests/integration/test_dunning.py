"""The failed-payment reminder schedule, driven by a controllable clock instead of sleeps."""

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import time_machine
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import utcnow
from billing.models import Payment, Pledge, PledgeStatus, Reader
from billing.settings import get_settings
from tests.conftest import CaughtMail
from tests.integration.test_reader_emails import deliver_pending
from tests.ledger_rows import make_payment, make_pledge, make_reader
from workers.dunning import due_step, queue_due_reminders

SECOND = "Reminder: your payment to Our Newsroom is still open"
FINAL = "Last reminder: your support for Our Newsroom is about to end"


@pytest.fixture
def schedule(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DUNNING_SCHEDULE_DAYS", "3,7")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def failed_invoice(
    db: Session, smtp_server: CaughtMail, schedule: None
) -> tuple[Reader, Pledge, Payment, datetime]:
    """A reader whose invoice failed and who got the first reminder just now."""
    reader = make_reader(db)
    pledge = make_pledge(db, reader, status=PledgeStatus.PAST_DUE)
    payment = make_payment(db, pledge, status="failed")
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=False
    )
    deliver_pending(db)
    smtp_server.messages.clear()
    return reader, pledge, payment, utcnow()


def run_dunning_at(db: Session, moment: datetime) -> list[str]:
    with time_machine.travel(moment, tick=False):
        queue_due_reminders(db, utcnow())
        return deliver_pending(db)


def subjects(smtp_server: CaughtMail) -> list[str]:
    return [str(message["Subject"]) for message in smtp_server.messages]


def test_second_reminder_after_n_days_then_final_notice_each_once(
    db: Session, smtp_server: CaughtMail, failed_invoice: tuple[Reader, Pledge, Payment, datetime]
) -> None:
    *_, reminded_at = failed_invoice

    assert run_dunning_at(db, reminded_at + timedelta(days=2, hours=23)) == []
    assert run_dunning_at(db, reminded_at + timedelta(days=3, minutes=1)) == ["sent"]
    assert run_dunning_at(db, reminded_at + timedelta(days=4)) == []
    assert run_dunning_at(db, reminded_at + timedelta(days=7, minutes=1)) == ["sent"]
    assert run_dunning_at(db, reminded_at + timedelta(days=20)) == []
    assert subjects(smtp_server) == [SECOND, FINAL]


def test_a_scheduler_that_was_down_sends_only_the_latest_reminder_due(
    db: Session, smtp_server: CaughtMail, failed_invoice: tuple[Reader, Pledge, Payment, datetime]
) -> None:
    *_, reminded_at = failed_invoice

    run_dunning_at(db, reminded_at + timedelta(days=8))
    run_dunning_at(db, reminded_at + timedelta(days=9))

    assert subjects(smtp_server) == [FINAL]


def test_no_reminder_after_the_invoice_is_paid(
    db: Session, smtp_server: CaughtMail, failed_invoice: tuple[Reader, Pledge, Payment, datetime]
) -> None:
    reader, pledge, payment, reminded_at = failed_invoice
    payment.status, payment.paid_at = "paid", utcnow()
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=False)
    db.commit()
    deliver_pending(db)

    run_dunning_at(db, reminded_at + timedelta(days=3, minutes=1))
    run_dunning_at(db, reminded_at + timedelta(days=8))

    assert subjects(smtp_server) == ["Thank you, your payment went through"]


def test_no_reminder_after_the_reader_updated_the_card(
    db: Session, smtp_server: CaughtMail, failed_invoice: tuple[Reader, Pledge, Payment, datetime]
) -> None:
    reader, pledge, _payment, reminded_at = failed_invoice
    run_dunning_at(db, reminded_at + timedelta(days=3, minutes=1))
    notifications.card_updated(db, reader=reader, pledge=pledge)
    db.commit()

    run_dunning_at(db, reminded_at + timedelta(days=8))

    assert subjects(smtp_server) == [SECOND]


def test_no_reminder_after_cancellation(
    db: Session, smtp_server: CaughtMail, failed_invoice: tuple[Reader, Pledge, Payment, datetime]
) -> None:
    reader, pledge, _payment, reminded_at = failed_invoice
    pledge.status = PledgeStatus.CANCELED
    notifications.pledge_canceled(db, reader=reader, pledge=pledge, after_failed_payments=False)
    db.commit()
    deliver_pending(db)

    run_dunning_at(db, reminded_at + timedelta(days=8))

    assert subjects(smtp_server) == ["Your support for Our Newsroom is cancelled"]


def test_the_schedule_counts_from_when_the_first_reminder_actually_went_out(
    db: Session, smtp_server: CaughtMail, schedule: None
) -> None:
    reader = make_reader(db)
    pledge = make_pledge(db, reader, status=PledgeStatus.PAST_DUE)
    payment = make_payment(db, pledge, status="failed")
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=True
    )
    db.commit()
    failed_at = utcnow()

    # SMTP was down for four days: nothing can follow a reminder the reader has not seen.
    assert run_dunning_at(db, failed_at + timedelta(days=3, minutes=1)) == ["sent"]
    assert subjects(smtp_server) == ["Please update your card for Our Newsroom"]
    assert run_dunning_at(db, failed_at + timedelta(days=4)) == []
    assert run_dunning_at(db, failed_at + timedelta(days=6, minutes=2)) == ["sent"]
    assert subjects(smtp_server)[-1] == SECOND


@pytest.mark.parametrize(
    ("days", "step"), [(0, None), (2.9, None), (3, 2), (6.9, 2), (7, 3), (30, 3)]
)
def test_due_step_follows_the_configured_days(days: float, step: int | None) -> None:
    start = datetime(2026, 11, 1, tzinfo=utcnow().tzinfo)
    assert due_step(start, start + timedelta(days=days), [3, 7]) == step


def test_when_the_updated_card_fails_too_the_reader_hears_once_per_update(
    db: Session, smtp_server: CaughtMail, failed_invoice: tuple[Reader, Pledge, Payment, datetime]
) -> None:
    reader, pledge, payment, reminded_at = failed_invoice

    def stripe_retry_fails(attempt: int) -> list[str]:
        payment.attempt_count = attempt
        for _ in range(2):  # each failure event arrives twice
            notifications.payment_failed(
                db, reader=reader, pledge=pledge, payment=payment, hard_decline=True
            )
            db.commit()
        return deliver_pending(db)

    assert stripe_retry_fails(2) == []  # the same card again: the schedule speaks next
    notifications.card_updated(db, reader=reader, pledge=pledge)
    db.commit()
    assert stripe_retry_fails(3) == ["sent"]  # the new card failed: say so, once
    assert stripe_retry_fails(4) == []
    notifications.card_updated(db, reader=reader, pledge=pledge)
    db.commit()
    assert stripe_retry_fails(5) == ["sent"]

    run_dunning_at(db, reminded_at + timedelta(days=8))
    assert subjects(smtp_server) == ["Please update your card for Our Newsroom"] * 2
