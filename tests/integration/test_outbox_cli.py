"""`pledges outbox list --failed` and `pledges outbox retry <id>`: what an operator sees, does."""

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing import notifications
from billing.cli import app
from billing.models import EmailOutbox
from tests.conftest import CaughtMail
from tests.integration.test_reader_emails import deliver_pending
from tests.ledger_rows import make_payment, make_pledge, make_reader

runner = CliRunner()


def two_receipts_one_failed(db: Session) -> tuple[EmailOutbox, EmailOutbox]:
    reader = make_reader(db)
    pledge = make_pledge(db, reader)
    for first in (True, False):
        payment = make_payment(db, pledge)
        notifications.payment_succeeded(
            db, reader=reader, pledge=pledge, payment=payment, first=first
        )
    db.commit()
    failed, sent = db.scalars(select(EmailOutbox).order_by(EmailOutbox.id)).all()
    failed.status, failed.attempts, failed.last_error = "failed", 8, "550 5.1.1 mailbox unavailable"
    sent.status = "sent"
    db.commit()
    return failed, sent


def test_list_failed_shows_only_failed_emails_with_their_last_error(db: Session) -> None:
    failed, sent = two_receipts_one_failed(db)

    result = runner.invoke(app, ["outbox", "list", "--failed"])

    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{failed.id}\tfailed\t8\twelcome_receipt\tada@example.org\t")
    assert line.endswith("550 5.1.1 mailbox unavailable")
    assert sent.dedupe_key not in result.stdout


def test_retry_gives_a_failed_email_fresh_attempts_and_it_is_delivered(
    db: Session, smtp_server: CaughtMail
) -> None:
    failed, _sent = two_receipts_one_failed(db)

    result = runner.invoke(app, ["outbox", "retry", str(failed.id)])

    assert result.exit_code == 0, result.output
    assert f"email {failed.id} (welcome_receipt to ada@example.org) queued again" in result.stdout
    db.refresh(failed)
    assert (failed.status, failed.attempts) == ("pending", 0)
    assert deliver_pending(db) == ["sent"]
    assert len(smtp_server.messages) == 1


def test_retry_refuses_an_email_that_did_not_fail_and_changes_nothing(db: Session) -> None:
    _failed, sent = two_receipts_one_failed(db)

    result = runner.invoke(app, ["outbox", "retry", str(sent.id)])

    assert result.exit_code == 1
    assert f"email {sent.id} is sent; only failed emails are retried" in result.output
    db.refresh(sent)
    assert sent.status == "sent"


def test_retry_of_an_unknown_id_says_so(db: Session) -> None:
    result = runner.invoke(app, ["outbox", "retry", "999999"])

    assert result.exit_code == 1
    assert "no email with id 999999" in result.output


def test_list_refuses_an_unknown_status(db: Session) -> None:
    result = runner.invoke(app, ["outbox", "list", "--status", "lost"])

    assert result.exit_code == 2
    assert "unknown status 'lost'" in result.output


def test_list_refuses_failed_together_with_another_status(db: Session) -> None:
    result = runner.invoke(app, ["outbox", "list", "--failed", "--status", "sent"])

    assert result.exit_code == 2
    assert "--failed and --status disagree" in result.output
