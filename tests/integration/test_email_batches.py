"""Mails sent in batches: one claim and one SMTP connection for many, and the same guarantees as
one by one (a refused recipient fails alone, a dead worker's claim comes back once)."""

import email
import email.policy
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import get_engine, utcnow
from billing.models import EmailOutbox
from billing.settings import get_settings
from tests.conftest import serving_smtp
from tests.ledger_rows import make_payment, make_pledge, make_reader
from workers import emails


class RefusingMail:
    """Accepts every recipient but `refused@` (550, for good) and `busy@` (451, for now), and
    notes which connection each message came over."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.connections: set[int] = set()

    async def handle_RCPT(
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if address.startswith("refused@"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy@"):
            return "451 4.2.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.connections.add(id(session))
        return "250 accepted"


@pytest.fixture
def refusing_smtp(
    test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[RefusingMail]:
    caught = RefusingMail()
    with serving_smtp(caught, test_environment, monkeypatch):
        yield caught


def queue_receipts(db: Session, *addresses: str) -> list[str]:
    keys = []
    for address in addresses:
        reader = make_reader(db, email=address)
        pledge = make_pledge(db, reader)
        payment = make_payment(db, pledge)
        notifications.payment_succeeded(
            db, reader=reader, pledge=pledge, payment=payment, first=False
        )
        keys.append(f"receipt:{payment.stripe_invoice_id}")
    db.commit()
    return keys


def statuses(db: Session) -> dict[str, str]:
    db.expire_all()
    rows = db.scalars(select(EmailOutbox)).all()
    db.commit()
    return {row.to_email: row.status for row in rows}


def test_one_connection_sends_a_batch_and_a_refused_recipient_fails_alone(
    db: Session, refusing_smtp: RefusingMail
) -> None:
    queue_receipts(
        db, "ada@example.org", "refused@example.org", "busy@example.org", "bo@example.org"
    )

    assert emails.deliver_due(get_settings(), 10) == 4

    assert refusing_smtp.connections and len(refusing_smtp.connections) == 1
    assert sorted(str(message["To"]) for message in refusing_smtp.messages) == [
        "ada@example.org", "bo@example.org",
    ]  # fmt: skip
    assert statuses(db) == {
        "ada@example.org": "sent",
        "bo@example.org": "sent",
        "refused@example.org": "failed",  # 5xx: for good
        "busy@example.org": "pending",  # 4xx: tried again after a backoff
    }
    busy = db.scalars(select(EmailOutbox).where(EmailOutbox.to_email == "busy@example.org")).one()
    assert busy.send_after > utcnow() and "451" in (busy.last_error or "")


def test_batch_claimed_by_a_worker_that_died_is_sent_once_after_its_lease(
    db: Session, refusing_smtp: RefusingMail
) -> None:
    keys = queue_receipts(db, "ada@example.org", "bo@example.org", "cy@example.org")
    # A worker claims and renders a batch, then dies before sending any of it.
    assert emails._claim_batch(get_settings(), 10).claimed == 3
    assert set(statuses(db).values()) == {"sending"}

    # While the dead worker's lease runs, nobody else sends those mails.
    assert emails.deliver_due(get_settings(), 10) == 0
    assert all(emails.deliver(key).outcome == "skipped" for key in keys)
    assert refusing_smtp.messages == []

    lease = timedelta(seconds=get_settings().email_send_lease_seconds)
    with time_machine.travel(utcnow() + lease + timedelta(seconds=1), tick=False):
        # The sweep hands each one out again (`send_email` by key); a duplicate task finds the
        # mail sent.
        assert [emails.deliver(key).outcome for key in keys] == ["sent"] * 3
        assert [emails.deliver(key).outcome for key in keys] == ["skipped"] * 3

    assert sorted(str(message["To"]) for message in refusing_smtp.messages) == [
        "ada@example.org", "bo@example.org", "cy@example.org",
    ]  # fmt: skip
    assert set(statuses(db).values()) == {"sent"}


def test_send_due_sends_every_batch_once_while_rendering_the_next(
    db: Session, refusing_smtp: RefusingMail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emails, "EMAIL_BATCH", 2)
    addresses = [f"reader{number}@example.org" for number in range(5)]
    queue_receipts(db, *addresses)

    assert emails.send_due() == 5

    assert sorted(str(message["To"]) for message in refusing_smtp.messages) == addresses
    # Three batches (2, 2, 1), each over a connection of its own.
    assert len(refusing_smtp.connections) == 3
    assert set(statuses(db).values()) == {"sent"}


class CheckingMail(RefusingMail):
    """Notes, as each message is handed over, which mails the outbox already has as sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_before: list[set[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with get_engine().connect() as connection:
            sent = connection.scalars(
                select(EmailOutbox.to_email).where(EmailOutbox.status == "sent")
            ).all()
        self.sent_before.append(set(sent))
        return await super().handle_DATA(server, session, envelope)


def test_each_mail_is_handed_over_only_once_the_one_before_is_marked_sent(
    db: Session, test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = [f"reader{number}@example.org" for number in range(4)]
    queue_receipts(db, *addresses)
    checking = CheckingMail()

    with serving_smtp(checking, test_environment, monkeypatch):
        assert emails.deliver_due(get_settings(), 10) == 4

    handed_over = [str(message["To"]) for message in checking.messages]
    # The mark of each mail is written while the next one's envelope goes out, and committed
    # before that one's DATA: a crash can leave at most the last mail taken unmarked.
    assert checking.sent_before == [set(handed_over[:index]) for index in range(4)]


def test_a_mark_the_database_refuses_stops_the_batch_and_the_next_one_sends(
    db: Session, refusing_smtp: RefusingMail, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_receipts(db, "first@example.org", "second@example.org")
    # A statement the server refuses, as it would a mark on a connection that broke mid-batch.
    mark = emails._MARK_SENT_SQL
    monkeypatch.setattr(emails, "_MARK_SENT_SQL", b"UPDATE email_outbox SET no_such_column = 1")

    with pytest.raises(Exception, match="no_such_column"):
        emails.deliver_due(get_settings(), 10)

    # The first mail went and its mark failed: it stays claimed, to go again after its lease.
    # The second was never handed over.
    assert [str(message["To"]) for message in refusing_smtp.messages] == ["first@example.org"]
    assert statuses(db) == {"first@example.org": "sending", "second@example.org": "sending"}

    monkeypatch.setattr(emails, "_MARK_SENT_SQL", mark)
    queue_receipts(db, "third@example.org")
    assert emails.deliver_due(get_settings(), 10) == 1
    assert statuses(db)["third@example.org"] == "sent"
    assert [str(message["To"]) for message in refusing_smtp.messages][-1] == "third@example.org"
