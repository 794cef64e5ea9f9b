"""Sending the email outbox: claim a row, render it, hand it to SMTP, mark it sent, at most once.

A row moves pending → sending → sent (or back to pending with a later `send_after` after a
passing SMTP error, failed after EMAIL_MAX_ATTEMPTS, canceled if the mail no longer makes sense).
While a row is `sending`, `send_after` is the end of that claim's lease: a redelivered task
leaves it alone, and only after a crashed worker's lease runs out does the sweep send it again.
"""

import binascii
import email.policy
import hashlib
import random
import select as os_select
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache

import psycopg
import structlog
from celery import Task
from psycopg import pq
from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.orm import Session

from billing.db import get_engine, session_scope, utcnow
from billing.models import EmailOutbox, Payment, Pledge, PledgeStatus, Reader
from billing.notifications import REMINDER_TEMPLATES, SEND_EMAIL_TASK, reminder_is_due_for
from billing.outbox import SEND_DUE_TASK
from billing.settings import Settings, get_settings
from billing.task_queue import send_task
from workers import card_expiry
from workers.celery_app import app
from workers.mail_context import email_context
from workers.rendering import pick_locale, render_email
from workers.smtp import PermanentSmtpError, TransientSmtpError, send_message, send_messages
from workers.statement_mail import STATEMENT_TEMPLATE, Attachment, statement_parts

log = structlog.get_logger()

# A pending row whose send is this late was never delivered to a worker (broker down, lost task).
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 1000
# Mails claimed, rendered and sent over one SMTP connection together.
EMAIL_BATCH = 50


class _HeaderClasses(HeaderRegistry):
    """The standard registry makes a new class for every header it parses, a third of the time
    it takes to build a mail; one class per header name serves every mail."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._classes:
            self._classes[key] = super().__getitem__(name)
        return self._classes[key]


class _Policy(email.policy.EmailPolicy):
    """Writes a short ASCII header as it is. The standard policy re-parses every header it writes
    to fold it, which took a third of the time a mail spends being written, and leaves such a
    header unchanged anyway (tests/unit/test_email_rendering.py compares the bytes)."""

    def fold_binary(self, name: str, value: str) -> bytes:
        text = str(value)
        if (
            text.isascii()
            and len(name) + len(text) + 2 <= (self.max_line_length or 0)
            and "\r" not in text
            and "\n" not in text
        ):
            return f"{name}: {text}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


# Python's header folding drops the space between two encoded words, which turns a long
# Russian subject's "напоминание: ваша" into "напоминание:ваша"; long lines avoid the folding.
MESSAGE_POLICY = _Policy(linesep="\r\n", max_line_length=998, header_factory=_HeaderClasses())


# One boundary for every mail, fixed so that the message is not re-parsed and no regular
# expression compiled to pick one per mail (half the time the first send took). It cannot occur
# in a part: quoted-printable and base64 never write "=" followed by "_".
ALTERNATIVE = 'multipart/alternative; boundary="=_reader-pledges-alternative"'


@lru_cache(maxsize=1024)
def _parsed(name: str, value: str) -> BaseHeader:
    """A header that mails repeat (sender, language, a template's subject, the second they are
    built in), parsed once: header objects are immutable, and a message takes one as it is."""
    return MESSAGE_POLICY.header_factory(name, value)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Delivery:
    """What one attempt did: sent, skipped (not ours to send now), canceled, retry or failed."""

    outcome: str
    retry_in: float | None = None


# celery ships no type hints, hence the ignores on its decorators.
@app.task(name=SEND_EMAIL_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def send_email(self: Task, dedupe_key: str) -> str:
    delivery = deliver(dedupe_key)
    if delivery.retry_in is not None:
        # The row already says when; this only wakes a worker then. If the broker loses it,
        # the sweep finds the row.
        raise self.retry(countdown=delivery.retry_in, max_retries=None)
    return delivery.outcome


@app.task(name="workers.emails.sweep_outbox")  # type: ignore[untyped-decorator]
def sweep_outbox() -> int:
    """Re-enqueue mail whose send was lost: pending long past due, or a crashed worker's claim."""
    now = utcnow()
    overdue = EmailOutbox.send_after <= now - SWEEP_GRACE
    with session_scope() as session:
        keys = session.scalars(
            select(EmailOutbox.dedupe_key)
            .where(
                or_(
                    and_(EmailOutbox.status == "pending", overdue),
                    and_(EmailOutbox.status == "sending", EmailOutbox.send_after <= now),
                )
            )
            .order_by(EmailOutbox.send_after)
            .limit(SWEEP_BATCH)
        ).all()
    for key in keys:
        send_task(SEND_EMAIL_TASK, key)
    if keys:
        log.info("outbox_swept", count=len(keys))
    return len(keys)


def deliver(dedupe_key: str) -> Delivery:
    settings = get_settings()
    with session_scope() as session:
        row = _claim(session, dedupe_key, settings)
        if row is None:
            return Delivery("skipped")
        row_id, template = row.id, row.template
        prepared = _prepare(session, row, settings)
        if isinstance(prepared, Delivery):
            return prepared
    try:
        send_message(prepared, settings)
    except TransientSmtpError as error:
        return _record_failure(row_id, str(error), settings, transient=True)
    except PermanentSmtpError as error:
        return _record_failure(row_id, str(error), settings, transient=False)
    with _sent_marks() as marks:
        marks.send(row_id, template)
    return Delivery("sent")


@app.task(name=SEND_DUE_TASK, acks_late=True)  # type: ignore[untyped-decorator]
def send_due() -> int:
    """Send every due pending mail, a batch per claim and per SMTP connection; how many.

    While one batch is on the wire, a second thread claims and renders the next: rendering
    keeps a core busy, and sending mostly waits for the SMTP server and the database.
    """
    settings = get_settings()
    claimed = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="render-mail") as renderer:
        batch = _claim_batch(settings, EMAIL_BATCH)
        while True:
            upcoming = (
                renderer.submit(_claim_batch, settings, EMAIL_BATCH)
                if batch.claimed == EMAIL_BATCH
                else None
            )
            _send_batch(batch, settings)
            claimed += batch.claimed
            if upcoming is None:
                return claimed
            batch = upcoming.result()


def deliver_due(settings: Settings, limit: int) -> int:
    """Claim up to `limit` due mails at once, render them, send them over one connection."""
    batch = _claim_batch(settings, limit)
    _send_batch(batch, settings)
    return batch.claimed


@dataclass(frozen=True)
class _Batch:
    claimed: int
    outgoing: list[tuple[EmailOutbox, EmailMessage]]


def _claim_batch(settings: Settings, limit: int) -> _Batch:
    """Up to `limit` due mails, claimed (`sending`, with a lease) and committed before anything
    is sent, with their messages; rows that must not go out are settled in the same commit."""
    outgoing: list[tuple[EmailOutbox, EmailMessage]] = []
    with session_scope() as session:
        rows = _claim_due(session, limit, settings)
        # Referenced here for the batch's life: the session only holds its objects weakly.
        ledger = _load_ledger(session, rows)
        for row in rows:
            prepared = _prepare(session, row, settings)
            if isinstance(prepared, EmailMessage):
                outgoing.append((row, prepared))
        del ledger
    return _Batch(len(rows), outgoing)


def _send_batch(batch: _Batch, settings: Settings) -> None:
    """Send over one connection, each mail marked sent once the server accepts it.

    The mark goes to the database at once and its answer is read while the next mail's envelope
    goes out; that mail is handed over (DATA) only once the mark is committed, so a crash
    re-sends at most the one message the server took last, as `deliver` does.
    """
    if not batch.outgoing:
        return
    messages = [message for _row, message in batch.outgoing]
    with _sent_marks() as marks:
        sent = zip(batch.outgoing, send_messages(messages, settings, marks.wait), strict=True)
        for (row, _message), error in sent:
            if error is None:
                marks.send(row.id, row.template)
                continue
            failure = _record_failure(
                row.id, str(error), settings, transient=isinstance(error, TransientSmtpError)
            )
            if failure.retry_in is not None:  # wake a worker then; the sweep covers a lost one
                send_task(SEND_EMAIL_TASK, row.dedupe_key, countdown=failure.retry_in)


def _load_ledger(session: Session, rows: Sequence[EmailOutbox]) -> list[object]:
    """Read the pledges, readers and payments of a batch's mails in two statements, so that
    checking and rendering each mail finds them in the session instead of asking one by one."""
    pledge_ids = {row.pledge_id for row in rows if row.pledge_id is not None}
    payment_ids = {row.payment_id for row in rows if row.payment_id is not None}
    loaded: list[object] = []
    if pledge_ids:
        pledges = session.execute(
            select(Pledge, Reader)
            .join(Reader, Reader.id == Pledge.reader_id)
            .where(Pledge.id.in_(pledge_ids))
        )
        loaded.extend(item for pair in pledges for item in pair)
    if payment_ids:
        loaded.extend(session.scalars(select(Payment).where(Payment.id.in_(payment_ids))))
    return loaded


def _prepare(session: Session, row: EmailOutbox, settings: Settings) -> EmailMessage | Delivery:
    """The message for a claimed row, or what became of a row that must not be sent."""
    if row.attempts > settings.email_max_attempts:
        # Claimed this often without an outcome: each attempt died mid-send (crashes).
        row.status, row.last_error = "failed", f"no outcome after {row.attempts - 1} attempts"
        log.error("email_failed", outbox_id=row.id, template=row.template, error=row.last_error)
        return Delivery("failed")
    if not _still_wanted(session, row):
        row.status = "canceled"
        log.info("email_canceled", outbox_id=row.id, template=row.template)
        return Delivery("canceled")
    try:
        return build_message(session, row, settings)
    except Exception as error:
        # A template or context bug: retrying cannot help, an operator must look. (A database
        # error cannot be recorded here; the claim rolls back and the sweep tries again.)
        row.status, row.last_error = "failed", f"rendering: {error}"[:2000]
        log.error("email_failed", outbox_id=row.id, template=row.template, error=str(error))
        return Delivery("failed")


@contextmanager
def _sent_marks() -> Iterator["_InFlightMarks"]:
    """Marks of sent mails on a connection of their own, one round trip each: every statement
    commits by itself and does not wait for its commit to reach the disk.

    Only a database crash in the next fraction of a second can lose such a commit, and then the
    mail is sent again once its lease runs out, as after a worker crash between the server's
    acceptance and the commit; no mail is ever lost that way. The setting is this connection's
    for the batch alone (reset before it returns to the pool). The last mark is waited for on the
    way out.
    """
    with get_engine().connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("SET synchronous_commit = off")
        marks = _InFlightMarks(connection)
        try:
            yield marks
            marks.wait()
        except BaseException:
            connection.invalidate()  # a mark may still be on its way: the pool must not reuse it
            raise
        connection.exec_driver_sql("RESET synchronous_commit")


_MARK_SENT_SQL = (
    b"UPDATE email_outbox SET status = 'sent', sent_at = $2, updated_at = $2, last_error = NULL"
    b" WHERE id = $1 AND status = 'sending'"
)


class _InFlightMarks:
    """Marks a mail sent without waiting for the answer: the statement is sent through libpq at
    once and its answer read when `wait` is called (before the next mail's DATA). A thread
    doing the marks cost the worker more in handing each one over than the statement itself."""

    def __init__(self, connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        self._pgconn = driver.pgconn
        self._pending: tuple[int, str] | None = None

    def send(self, row_id: int, template: str) -> None:
        self.wait()
        now = utcnow().isoformat().encode()
        self._pgconn.send_query_params(_MARK_SENT_SQL, [str(row_id).encode(), now])
        self._pending = (row_id, template)

    def wait(self) -> None:
        if self._pending is None:
            return
        row_id, template = self._pending
        self._pending = None
        pgconn = self._pgconn
        pgconn.consume_input()
        while pgconn.is_busy():
            # Waits with the interpreter lock released, unlike libpq's own blocking read.
            os_select.select([pgconn.socket], [], [])
            pgconn.consume_input()
        failed = None
        while (result := pgconn.get_result()) is not None:
            if result.status != pq.ExecStatus.COMMAND_OK:
                failed = result.get_error_message()
        if failed is not None:
            raise psycopg.OperationalError(f"marking outbox row {row_id} sent: {failed}")
        log.info("email_sent", outbox_id=row_id, template=template)


def build_message(session: Session, row: EmailOutbox, settings: Settings) -> EmailMessage:
    context = email_context(session, row, settings)
    attachments: list[Attachment] = []
    if row.template == STATEMENT_TEMPLATE:
        extra, attachments = statement_parts(session, row, settings)
        context = {**context, **extra}
    rendered = render_email(row.template, row.locale, context)
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = _parsed("From", settings.mail_from)
    message["To"] = row.to_email
    message["Subject"] = _parsed("Subject", rendered.subject)
    message["Date"] = _parsed("Date", format_datetime(utcnow()))
    # The same id on every attempt, so a receiving system can drop a copy sent twice.
    message["Message-ID"] = row.message_id or message_id_for(row.dedupe_key, settings)
    message["Auto-Submitted"] = _parsed("Auto-Submitted", "auto-generated")
    if settings.newsroom_support_email:
        message["Reply-To"] = _parsed("Reply-To", settings.newsroom_support_email)
    message["MIME-Version"] = _parsed("MIME-Version", "1.0")
    message["Content-Type"] = _parsed("Content-Type", ALTERNATIVE)
    message.attach(_text_part(rendered.text, "plain"))
    message.attach(_text_part(rendered.html, "html"))
    for attachment in attachments:
        message.add_attachment(
            attachment.content, maintype=attachment.maintype, subtype=attachment.subtype,
            filename=attachment.filename,
        )  # fmt: skip
    # After the attachments: making the message multipart/mixed moves every Content-* header
    # set before into the inner part.
    message["Content-Language"] = _parsed("Content-Language", pick_locale(row.locale))
    return message


def _text_part(text: str, subtype: str) -> EmailMessage:
    """A UTF-8 part in quoted-printable, as set_content makes it, but a few times faster: its
    headers are parsed once for every mail, and the encoding is the C one."""
    part = EmailMessage(policy=MESSAGE_POLICY)
    part["Content-Type"] = _parsed("Content-Type", f'text/{subtype}; charset="utf-8"')
    part["Content-Transfer-Encoding"] = _parsed("Content-Transfer-Encoding", "quoted-printable")
    part.set_payload(binascii.b2a_qp(text.encode(), istext=True).decode("ascii"))
    return part


def message_id_for(dedupe_key: str, settings: Settings) -> str:
    domain = _message_domain(settings)
    return f"<{hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]}@{domain}>"


def _message_domain(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"


def retry_delay(attempts: int, settings: Settings) -> float:
    """Exponential backoff with jitter, so a recovering server is not hit by every row at once."""
    ceiling = min(
        settings.email_retry_max_seconds, settings.email_retry_base_seconds * 2 ** (attempts - 1)
    )
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311  (jitter, not a secret)


def _claim(session: Session, dedupe_key: str, settings: Settings) -> EmailOutbox | None:
    """Take the row for this attempt, atomically: at most one worker holds an unexpired claim."""
    now = utcnow()
    return session.scalar(
        update(EmailOutbox)
        .where(
            EmailOutbox.dedupe_key == dedupe_key,
            EmailOutbox.status.in_(("pending", "sending")),
            EmailOutbox.send_after <= now,
        )
        .values(
            status="sending",
            attempts=EmailOutbox.attempts + 1,
            send_after=now + timedelta(seconds=settings.email_send_lease_seconds),
            message_id=message_id_for(dedupe_key, settings),
            updated_at=now,
        )
        .returning(EmailOutbox),
        execution_options={"synchronize_session": False},
    )


def _claim_due(session: Session, limit: int, settings: Settings) -> list[EmailOutbox]:
    """Take up to `limit` due pending rows, skipping rows another worker is taking."""
    now = utcnow()
    due = (
        select(EmailOutbox.id)
        .where(EmailOutbox.status == "pending", EmailOutbox.send_after <= now)
        .order_by(EmailOutbox.send_after)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.scalars(
        update(EmailOutbox)
        .where(EmailOutbox.id.in_(due.scalar_subquery()))
        .values(
            status="sending",
            attempts=EmailOutbox.attempts + 1,
            send_after=now + timedelta(seconds=settings.email_send_lease_seconds),
            # message_id_for in SQL: in the same UPDATE, as a second UPDATE of a row this
            # transaction changed re-checks its pledge key and waits on the webhook batch
            # holding that pledge (a deadlock).
            message_id=func.concat(
                "<",
                func.left(
                    func.encode(
                        func.sha256(func.convert_to(EmailOutbox.dedupe_key, "UTF8")), "hex"
                    ),
                    32,
                ),
                f"@{_message_domain(settings)}>",
            ),
            updated_at=now,
        )
        .returning(EmailOutbox),
        execution_options={"synchronize_session": False},
    ).all()
    return list(rows)


def _still_wanted(session: Session, row: EmailOutbox) -> bool:
    """Reminders re-check the ledger at the last moment; an erased reader gets nothing."""
    pledge = session.get(Pledge, row.pledge_id) if row.pledge_id is not None else None
    if pledge is not None:
        reader = session.get(Reader, pledge.reader_id)
        if reader is not None and reader.erased_at is not None:
            return False
    if row.template in REMINDER_TEMPLATES:
        payment = session.get(Payment, row.payment_id) if row.payment_id is not None else None
        return reminder_is_due_for(payment, pledge)
    if row.template == card_expiry.TEMPLATE:
        return card_expiry.still_wanted(row, pledge)
    if row.template == "resuming":  # not after the reader cancelled or resumed meanwhile
        return pledge is not None and pledge.status == PledgeStatus.PAUSED
    return True


def _record_failure(row_id: int, error: str, settings: Settings, *, transient: bool) -> Delivery:
    with session_scope() as session:
        row = session.get_one(EmailOutbox, row_id, with_for_update=True)
        if row.status != "sending":  # canceled or taken over meanwhile: not ours to record
            return Delivery("skipped")
        row.last_error = error[:2000]
        if transient and row.attempts < settings.email_max_attempts:
            delay = retry_delay(row.attempts, settings)
            row.status, row.send_after = "pending", utcnow() + timedelta(seconds=delay)
            log.warning("email_retry", outbox_id=row_id, attempts=row.attempts, error=error)
            return Delivery("retry", retry_in=delay)
        row.status = "failed"
        log.error("email_failed", outbox_id=row_id, attempts=row.attempts, error=error)
        return Delivery("failed")
