"""`pledges statements send` and the yearly beat job: one statement mail per reader and year,
with its PDF, through reruns and a worker that dies between rendering and sending."""

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing.cli import app
from billing.db import reset_caches
from billing.models import EmailOutbox, Reader
from billing.settings import get_settings
from billing.statements.service import year_due_for_mailing
from tests.conftest import CaughtMail
from tests.reports_ledger import Ledger, seed_ledger
from workers import emails
from workers.emails import deliver, sweep_outbox
from workers.statements import send_due_statements

runner = CliRunner()
AFTER_2026 = datetime(2027, 1, 20, 12, tzinfo=UTC)
# Readers with something in 2026 in the reports ledger (hal's pledge never paid).
READERS_WITH_2026 = {"rosa", "ada", "dan", "cleo", "ben", "eve", "gus"}


class WorkerDied(BaseException):
    """What the process sees when it is killed: nothing after this line runs."""


@pytest.fixture
def ledger(db: Session) -> Ledger:
    return seed_ledger(db)


@pytest.fixture
def after_2026() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(AFTER_2026, tick=True) as traveller:
        yield traveller


def statement_keys(db: Session) -> list[str]:
    db.expire_all()
    keys = db.scalars(
        select(EmailOutbox.dedupe_key).where(EmailOutbox.template == "statement")
    ).all()
    db.commit()
    return sorted(keys)


def send(year: int = 2026) -> str:
    result = runner.invoke(app, ["statements", "send", "--year", str(year)])
    assert result.exit_code == 0, result.output
    return result.stdout


def deliver_all(db: Session) -> list[str]:
    return [deliver(key).outcome for key in statement_keys(db)]


def recipients(smtp_server: CaughtMail) -> list[str]:
    return sorted(str(message["To"]) for message in smtp_server.messages)


def test_send_mails_each_reader_their_statement_once_however_often_it_runs(
    db: Session, ledger: Ledger, smtp_server: CaughtMail, after_2026: time_machine.Traveller
) -> None:
    first = send()
    second = send()
    outcomes = deliver_all(db)
    third = send()
    again = deliver_all(db)

    assert "7 statements queued, 0 queued before" in first
    assert "0 statements queued, 7 queued before" in second
    assert "0 statements queued, 7 queued before" in third
    assert outcomes == ["sent"] * 7
    assert again == ["skipped"] * 7
    assert recipients(smtp_server) == sorted(f"{name}@example.org" for name in READERS_WITH_2026)
    ada = next(m for m in smtp_server.messages if m["To"] == "ada@example.org")
    assert ada["Subject"] == "Your 2026 giving statement from Our Newsroom"
    [attachment] = list(ada.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename().startswith("giving-statement-S-2026-")
    pdf = PdfReader(io.BytesIO(attachment.get_content()))
    text = pdf.pages[0].extract_text()
    assert "€18.00" in text and "ada@example.org" in text
    body = ada.get_body(("plain",))
    assert body is not None and "Net contribution: €18.00" in body.get_content()


def test_a_worker_killed_between_render_and_send_sends_the_statement_once(
    db: Session, ledger: Ledger, smtp_server: CaughtMail, after_2026: time_machine.Traveller,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    send()
    key = next(key for key in statement_keys(db) if key.startswith("statement:"))
    real_send = emails.send_message

    def killed(*_args: object) -> None:
        raise WorkerDied

    monkeypatch.setattr(emails, "send_message", killed)
    with pytest.raises(WorkerDied):
        deliver(key)  # rendered the PDF, then died before SMTP
    monkeypatch.setattr(emails, "send_message", real_send)

    # The broker redelivers the task and the operator reruns the command: nothing goes out
    # while the dead worker's claim lasts.
    send()
    assert deliver(key).outcome == "skipped"
    assert smtp_server.messages == []

    # The claim runs out; the sweep hands the mail to a worker again, which sends it once.
    after_2026.shift(timedelta(seconds=get_settings().email_send_lease_seconds + 1))
    assert sweep_outbox() >= 1
    assert deliver(key).outcome == "sent"
    assert deliver(key).outcome == "skipped"
    assert len(smtp_server.messages) == 1
    row = db.scalars(select(EmailOutbox).where(EmailOutbox.dedupe_key == key)).one()
    assert (row.status, row.attempts) == ("sent", 2)


def test_erased_readers_get_no_statement_mail(
    db: Session, ledger: Ledger, after_2026: time_machine.Traveller
) -> None:
    ada = db.scalars(select(Reader).where(Reader.email == "ada@example.org")).one()
    ada.erased_at = AFTER_2026
    db.commit()

    send()

    assert not any(str(ada.id) in key for key in statement_keys(db))
    assert len(statement_keys(db)) == len(READERS_WITH_2026) - 1


def test_send_refuses_a_year_that_is_not_over(db: Session, ledger: Ledger) -> None:
    with time_machine.travel(datetime(2026, 12, 31, 12, tzinfo=UTC), tick=True):
        result = runner.invoke(app, ["statements", "send", "--year", "2026"])

    assert result.exit_code == 1
    assert "not over yet" in result.output
    assert statement_keys(db) == []


@pytest.mark.parametrize(
    ("send_on", "today", "due"),
    [
        (None, datetime(2027, 1, 15, 12, tzinfo=UTC), None),  # off by default
        ("01-15", datetime(2027, 1, 14, 12, tzinfo=UTC), None),
        ("01-15", datetime(2027, 1, 15, 0, 30, tzinfo=UTC), 2026),
        ("01-15", datetime(2027, 2, 10, tzinfo=UTC), 2026),  # beat was down: caught up
        ("01-15", datetime(2027, 3, 1, tzinfo=UTC), None),  # too late: by hand only
    ],
)
def test_the_yearly_job_runs_on_statements_send_on_only(
    monkeypatch: pytest.MonkeyPatch, test_environment: dict[str, str], send_on: str | None,
    today: datetime, due: int | None,
) -> None:  # fmt: skip
    if send_on:
        monkeypatch.setenv("STATEMENTS_SEND_ON", send_on)
    reset_caches()
    try:
        with time_machine.travel(today, tick=False):
            assert year_due_for_mailing(get_settings()) == due
    finally:
        monkeypatch.undo()
        reset_caches()


def test_the_yearly_job_queues_the_statements_once(
    db: Session, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEMENTS_SEND_ON", "01-15")
    reset_caches()
    try:
        with time_machine.travel(datetime(2027, 1, 15, 9, tzinfo=UTC), tick=True):
            first, second = send_due_statements(), send_due_statements()
    finally:
        monkeypatch.undo()
        reset_caches()

    assert (first, second) == (len(READERS_WITH_2026), 0)
    assert len(statement_keys(db)) == len(READERS_WITH_2026)
