"""Confirmations of what a reader changed on the manage page, and manage links on request.

Outbox rows in the caller's transaction, sent by name after commit like billing.notifications;
the emails worker renders each template by name from the context listed here.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from billing.models import Pledge, Reader
from billing.notifications import SEND_EMAIL_TASK
from billing.outbox import queue_email
from billing.reader_links import manage_link
from billing.task_queue import enqueue_after_commit


def _queue(
    session: Session,
    *,
    key: str,
    template: str,
    reader: Reader,
    pledge: Pledge | None,
    context: dict[str, Any],
) -> bool:
    queued = queue_email(
        session,
        dedupe_key=key,
        template=template,
        to_email=reader.email,
        locale=pledge.locale if pledge is not None else reader.locale,
        context=context,
        pledge_id=pledge.id if pledge is not None else None,
    )
    if queued:
        enqueue_after_commit(session, SEND_EMAIL_TASK, key)
    return queued


def amount_changed(
    session: Session,
    *,
    reader: Reader,
    pledge: Pledge,
    old_amount_minor: int,
    old_interval: str,
    change_id: str,
) -> None:
    """Template `amount_changed`: manage_url, currency, old/new amount_minor, old/new interval."""
    context = {
        "manage_url": manage_link(pledge.id),
        "currency": pledge.currency,
        "old_amount_minor": old_amount_minor,
        "new_amount_minor": pledge.charged_minor,
        "old_interval": old_interval,
        "new_interval": pledge.interval,
    }
    _queue(
        session, key=f"amount_changed:{pledge.id}:{change_id}", template="amount_changed",
        reader=reader, pledge=pledge, context=context,
    )  # fmt: skip


def paused(session: Session, *, reader: Reader, pledge: Pledge, resumes_at: datetime) -> None:
    """Template `paused`: manage_url, resumes_at (ISO 8601, UTC)."""
    context = {"manage_url": manage_link(pledge.id), "resumes_at": resumes_at.isoformat()}
    _queue(
        session, key=f"paused:{pledge.id}:{resumes_at.date().isoformat()}", template="paused",
        reader=reader, pledge=pledge, context=context,
    )  # fmt: skip


def card_updated(
    session: Session, *, reader: Reader, pledge: Pledge, payment_method_id: str, brand: str,
    last4: str,
) -> None:  # fmt: skip
    """Template `card_updated`: manage_url, card_brand, card_last4; once per pledge and card."""
    context = {"manage_url": manage_link(pledge.id), "card_brand": brand, "card_last4": last4}
    _queue(
        session, key=f"card_updated:{pledge.id}:{payment_method_id}", template="card_updated",
        reader=reader,
        pledge=pledge, context=context,
    )  # fmt: skip


def manage_links(session: Session, *, reader: Reader, pledges: list[Pledge], window: str) -> bool:
    """Template `manage_link`: links = [{manage_url, amount_minor, currency, interval, status}].

    One per reader per `window` (e.g. the hour), so repeated requests cannot flood an inbox.
    """
    links = [
        {
            "manage_url": manage_link(pledge.id),
            "amount_minor": pledge.charged_minor,
            "currency": pledge.currency,
            "interval": pledge.interval,
            "status": pledge.status,
        }
        for pledge in pledges
    ]
    return _queue(
        session, key=f"manage_link:{reader.id}:{window}", template="manage_link", reader=reader,
        pledge=pledges[0] if pledges else None, context={"links": links},
    )  # fmt: skip


def new_change_id() -> str:
    return uuid.uuid4().hex
