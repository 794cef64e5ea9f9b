"""The mails a careful newsroom sends: no duplicates, no contradictions, none once it is over."""

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import utcnow
from billing.models import EmailOutbox, Payment, Pledge, PledgeStatus, Reader
from billing.settings import get_settings
from tests.conftest import CaughtMail, free_port
from tests.integration.test_reader_emails import deliver_pending
from tests.ledger_rows import make_payment, make_pledge, make_reader, make_refund
from workers.dunning import queue_due_reminders
from workers.emails import deliver


def subjects(smtp_server: CaughtMail) -> list[str]:
    return [str(message["Subject"]) for message in smtp_server.messages]


def outbox(db: Session) -> dict[str, str]:
    db.expire_all()
    return {row.dedupe_key: row.status for row in db.scalars(select(EmailOutbox))}


def fail(db: Session, reader: Reader, pledge: Pledge, payment: Payment, hard: bool = False) -> None:
    payment.status = "failed"
    pledge.status = PledgeStatus.PAST_DUE
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=hard
    )
    db.commit()


def pay(db: Session, reader: Reader, pledge: Pledge, payment: Payment) -> None:
    payment.status, payment.paid_at = "paid", utcnow()
    pledge.status = PledgeStatus.ACTIVE
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=False)
    db.commit()


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Change one setting for this test only."""

    def change(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def supporter(db: Session) -> tuple[Reader, Pledge]:
    reader = make_reader(db)
    return reader, make_pledge(db, reader)


def test_invoice_paid_three_times_queues_and_sends_one_receipt(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    for _ in range(3):
        notifications.payment_succeeded(
            db, reader=reader, pledge=pledge, payment=payment, first=False
        )
        db.commit()
    key = f"receipt:{payment.stripe_invoice_id}"

    assert deliver_pending(db) == ["sent"]
    assert deliver(key).outcome == "skipped"  # a redelivered task finds it sent
    assert subjects(smtp_server) == ["Your receipt from Our Newsroom"]


def test_failed_then_paid_sends_one_reminder_then_one_recovery_and_nothing_when_schedule_is_due(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge, status="failed")
    fail(db, reader, pledge, payment)
    deliver_pending(db)
    pay(db, reader, pledge, payment)
    deliver_pending(db)

    with time_machine.travel(utcnow() + timedelta(days=30), tick=False):
        assert queue_due_reminders(db, utcnow()) == 0
        db.commit()
        assert deliver_pending(db) == []

    assert subjects(smtp_server) == [
        "Your payment to Our Newsroom didn't go through",
        "Thank you, your payment went through",
    ]


def test_paid_before_the_reminder_went_out_cancels_it_and_sends_a_plain_receipt(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge, status="failed")
    fail(db, reader, pledge, payment)
    pay(db, reader, pledge, payment)

    assert deliver_pending(db) == ["sent"]
    assert subjects(smtp_server) == ["Your receipt from Our Newsroom"]
    assert outbox(db)[f"reminder:{payment.stripe_invoice_id}:1"] == "canceled"


def test_failure_reported_after_the_receipt_sends_nothing(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=False)
    db.commit()
    # The handler keeps the payment paid, and even if it did not, the receipt wins.
    payment.status = "failed"
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=False
    )

    assert deliver_pending(db) == ["sent"]
    assert subjects(smtp_server) == ["Your receipt from Our Newsroom"]


def test_reminder_queued_but_paid_by_send_time_is_canceled_not_sent(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge, status="failed")
    fail(db, reader, pledge, payment)
    # Paid at Stripe, ledger updated, but the receipt event has not been handled yet.
    payment.status = "paid"
    db.commit()

    assert deliver_pending(db) == ["canceled"]
    assert smtp_server.messages == []


def test_hard_decline_goes_straight_to_update_your_card(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge, status="failed")
    fail(db, reader, pledge, payment, hard=True)
    deliver_pending(db)

    assert subjects(smtp_server) == ["Please update your card for Our Newsroom"]


@pytest.mark.parametrize("first_after_failed_payments", [False, True])
def test_a_pledge_ending_sends_one_ending_mail_never_both(
    db: Session,
    smtp_server: CaughtMail,
    supporter: tuple[Reader, Pledge],
    first_after_failed_payments: bool,
) -> None:
    reader, pledge = supporter
    pledge.status = PledgeStatus.CANCELED
    for after_failed in (first_after_failed_payments, not first_after_failed_payments):
        notifications.pledge_canceled(
            db, reader=reader, pledge=pledge, after_failed_payments=after_failed
        )
        db.commit()

    assert deliver_pending(db) == ["sent"]
    expected = "has ended" if first_after_failed_payments else "is cancelled"
    assert [expected in subject for subject in subjects(smtp_server)] == [True]


def test_cancellation_withdraws_an_unsent_reminder(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge, status="failed")
    fail(db, reader, pledge, payment)
    pledge.status = PledgeStatus.CANCELED
    notifications.pledge_canceled(db, reader=reader, pledge=pledge, after_failed_payments=True)
    db.commit()

    assert deliver_pending(db) == ["sent"]
    assert subjects(smtp_server) == ["Your support for Our Newsroom has ended"]


def test_refund_event_repeated_sends_one_refund_confirmation(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    refund = make_refund(db, payment, amount_minor=500)
    for _ in range(2):
        notifications.refund_created(
            db, reader=reader, pledge=pledge, payment=payment, refund_id=refund.stripe_refund_id
        )
        db.commit()

    assert deliver_pending(db) == ["sent"]
    assert subjects(smtp_server) == ["Your refund from Our Newsroom"]


def test_smtp_rejecting_the_message_for_good_marks_it_failed_at_once(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)

    async def reject(*_args: object) -> str:
        return "550 5.1.1 mailbox unavailable"

    smtp_server.handle_DATA = reject  # type: ignore[method-assign]
    assert deliver_pending(db) == ["failed"]
    row = db.scalars(select(EmailOutbox)).one()
    db.refresh(row)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None and "550" in row.last_error


def test_smtp_outage_puts_the_mail_back_with_backoff_then_fails_it_after_the_limit(
    db: Session, setting: Callable[[str, str], None], supporter: tuple[Reader, Pledge]
) -> None:
    setting("SMTP_PORT", str(free_port()))  # nothing listens there
    setting("EMAIL_MAX_ATTEMPTS", "3")
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)
    db.commit()
    key = f"receipt:{payment.stripe_invoice_id}"
    row = db.scalars(select(EmailOutbox)).one()

    first = deliver(key)
    db.refresh(row)
    assert first.outcome == "retry" and first.retry_in is not None
    assert 15 <= first.retry_in <= 30  # base 30 s, halved at most by jitter
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.send_after > utcnow() and "ConnectionRefusedError" in (row.last_error or "")
    assert deliver(key).outcome == "skipped"  # not before its time

    with time_machine.travel(utcnow() + timedelta(hours=1), tick=False):
        assert deliver(key).outcome == "retry"
    with time_machine.travel(utcnow() + timedelta(hours=2), tick=False):
        assert deliver(key).outcome == "failed"
    db.refresh(row)
    assert (row.status, row.attempts) == ("failed", 3)


def test_mail_for_a_reader_who_asked_to_be_forgotten_is_not_sent(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)
    reader.erased_at = utcnow()

    assert deliver_pending(db) == ["canceled"]
    assert smtp_server.messages == []


def test_an_email_whose_template_does_not_exist_fails_at_once_for_an_operator(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    from billing.outbox import queue_email

    reader, _pledge = supporter
    queue_email(db, dedupe_key="survey:1", template="survey", to_email=reader.email)

    assert deliver_pending(db) == ["failed"]
    row = db.scalars(select(EmailOutbox)).one()
    db.refresh(row)
    assert row.last_error == "rendering: no email template survey"
    assert smtp_server.messages == []


def test_a_refund_mail_whose_refund_is_missing_fails_visibly_instead_of_saying_none(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    notifications.refund_created(
        db, reader=reader, pledge=pledge, payment=payment, refund_id="re_not_in_ledger"
    )

    assert deliver_pending(db) == ["failed"]
    row = db.scalars(select(EmailOutbox)).one()
    db.refresh(row)
    assert row.last_error == "rendering: refund re_not_in_ledger is not in the ledger"
    assert smtp_server.messages == []


def test_an_email_whose_sends_keep_dying_midway_is_failed_after_the_limit(
    db: Session,
    smtp_server: CaughtMail,
    setting: Callable[[str, str], None],
    supporter: tuple[Reader, Pledge],
) -> None:
    setting("EMAIL_MAX_ATTEMPTS", "2")
    reader, pledge = supporter
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)
    db.commit()
    row = db.scalars(select(EmailOutbox)).one()
    # Two claims whose workers died before any outcome was recorded.
    row.status, row.attempts = "sending", 2
    db.commit()

    with time_machine.travel(utcnow() + timedelta(hours=1), tick=False):
        assert deliver(row.dedupe_key).outcome == "failed"
    db.refresh(row)
    assert (row.status, row.last_error) == ("failed", "no outcome after 2 attempts")
    assert smtp_server.messages == []


def test_a_long_lived_session_sees_that_the_reminder_went_out_meanwhile(
    db: Session, smtp_server: CaughtMail, supporter: tuple[Reader, Pledge]
) -> None:
    reader, pledge = supporter
    payment = make_payment(db, pledge, status="failed")
    fail(db, reader, pledge, payment)
    reminder = db.scalars(select(EmailOutbox)).one()  # loaded while still pending
    assert reminder.status == "pending"
    assert deliver(reminder.dedupe_key).outcome == "sent"  # by a worker, in its own session

    pay(db, reader, pledge, payment)
    deliver_pending(db)

    assert subjects(smtp_server)[-1] == "Thank you, your payment went through"
