"""Writing to the email outbox: one row per email that must go out, never two for one key."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.db import insert_rows, utcnow
from billing.models import EmailOutbox
from billing.task_queue import enqueue_after_commit

SEND_EMAIL_TASK = "workers.emails.send_email"
# Sends every due pending mail in batches: what a transaction that queued many mails enqueues.
SEND_DUE_TASK = "workers.emails.send_due"
STATUSES = ("pending", "sending", "sent", "failed", "canceled")


class OutboxEmail(TypedDict):
    """One mail to queue. A row written with status "canceled" holds its key so that mail is
    never sent (e.g. reminders after recovery)."""

    dedupe_key: str
    template: str
    to_email: str
    locale: NotRequired[str]
    context: NotRequired[dict[str, Any] | None]
    pledge_id: NotRequired[uuid.UUID | None]
    payment_id: NotRequired[int | None]
    send_after: NotRequired[datetime | None]
    status: NotRequired[str]


def queue_email(session: Session, **email: Unpack[OutboxEmail]) -> bool:
    """Add the email in the caller's transaction; False when its key was queued before.

    The caller commits, and enqueues the send only after that commit.
    """
    return queue_emails(session, [outbox_row(**email)]) == 1


def outbox_row(**email: Unpack[OutboxEmail]) -> dict[str, Any]:
    """The values of one outbox row, for `queue_emails`."""
    now = utcnow()
    return {
        "dedupe_key": email["dedupe_key"],
        "template": email["template"],
        "to_email": email["to_email"],
        "locale": email.get("locale", "en"),
        "context": email.get("context") or {},
        "pledge_id": email.get("pledge_id"),
        "payment_id": email.get("payment_id"),
        "status": email.get("status", "pending"),
        "attempts": 0,
        "send_after": email.get("send_after") or now,
        "created_at": now,
        "updated_at": now,
    }


def queue_emails(session: Session, emails: Sequence[dict[str, Any]]) -> int:
    """Add `outbox_row`s in one INSERT; how many were new (a key queued before is skipped)."""
    if not emails:
        return 0
    statement = (
        insert_rows(EmailOutbox, emails)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(EmailOutbox.id)
    )
    return len(session.execute(statement).all())


def cancel_pending(session: Session, *, pledge_id: uuid.UUID, key_prefix: str) -> int:
    """Cancel the pledge's unsent mails whose key starts with `key_prefix`; how many."""
    statement = (
        update(EmailOutbox)
        .where(
            EmailOutbox.pledge_id == pledge_id,
            EmailOutbox.dedupe_key.startswith(key_prefix, autoescape=True),
            EmailOutbox.status == "pending",
        )
        .values(status="canceled", updated_at=utcnow())
    )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


class OutboxError(Exception):
    """An operator asked for something the outbox cannot do; the message says why."""


def list_emails(
    session: Session, *, status: str | None = None, limit: int = 50
) -> list[EmailOutbox]:
    if status is not None and status not in STATUSES:
        raise OutboxError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    query = select(EmailOutbox).order_by(EmailOutbox.id.desc()).limit(limit)
    if status is not None:
        query = query.where(EmailOutbox.status == status)
    return list(session.scalars(query))


def retry_email(session: Session, outbox_id: int) -> EmailOutbox:
    """Give a failed mail a fresh set of attempts, sent once the caller commits."""
    row = session.get(EmailOutbox, outbox_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise OutboxError(f"no email with id {outbox_id}")
    if row.status != "failed":
        raise OutboxError(f"email {outbox_id} is {row.status}; only failed emails are retried")
    row.status, row.attempts, row.send_after = "pending", 0, utcnow()
    session.flush()
    enqueue_after_commit(session, SEND_EMAIL_TASK, row.dedupe_key)
    return row
