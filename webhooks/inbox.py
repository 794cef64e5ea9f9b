"""The webhook inbox: each Stripe event stored once under its id, and which ones need a run."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.manage.data_rights import scrub_if_erased
from billing.models import StripeEvent
from billing.task_queue import enqueue_after_commit
from webhooks.shapes import timestamp

PROCESS_TASK = "webhooks.process_event"
PENDING, HANDLED, IGNORED, FAILED = "pending", "handled", "ignored", "failed"


class InvalidEvent(Exception):
    """Signed, but not a Stripe event we can store."""


@dataclass(frozen=True)
class Stored:
    event_id: int
    status: str
    duplicate: bool


def parse_event(body: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidEvent("The body is not valid JSON.") from None
    if not isinstance(event, dict):
        raise InvalidEvent("The body must be a JSON object.")
    if not isinstance(event.get("id"), str) or not 0 < len(event["id"]) <= 255:
        raise InvalidEvent("The event has no id, or one longer than 255 characters.")
    if not isinstance(event.get("type"), str) or not 0 < len(event["type"]) <= 100:
        raise InvalidEvent("The event has no type, or one longer than 100 characters.")
    api_version = event.get("api_version")
    if api_version is not None and (not isinstance(api_version, str) or len(api_version) > 64):
        raise InvalidEvent("The event's api_version is not a short string.")
    if not isinstance(event.get("created"), int) or event["created"] <= 0:
        raise InvalidEvent("The event has no created timestamp.")
    if not isinstance((event.get("data") or {}).get("object"), dict):
        raise InvalidEvent("The event has no data.object.")
    return event


def store_event(session: Session, event: dict[str, Any], *, livemode: bool) -> Stored:
    """Insert the event unless its id is known; queue a run (after commit) when it needs one.

    A duplicate of a handled or ignored event changes nothing; a duplicate of a failed one puts
    it back to pending, because Stripe redelivering is the natural moment to try again.
    """
    # An event from the other mode (a live event at a test deployment) is kept, never applied.
    status = PENDING if bool(event.get("livemode")) == livemode else IGNORED
    # Stripe keeps sending news of an erased reader (the customer's deletion, a late invoice).
    event = scrub_if_erased(session, event)
    inserted = session.execute(
        insert(StripeEvent)
        .values(
            stripe_event_id=event["id"], type=event["type"],
            livemode=bool(event.get("livemode")), api_version=event.get("api_version"),
            stripe_created_at=timestamp(event["created"]), payload=event, status=status,
            attempts=0, received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["stripe_event_id"])
        .returning(StripeEvent.id, StripeEvent.status)
    ).first()  # fmt: skip
    created = inserted is not None
    row = (
        inserted
        or session.execute(
            select(StripeEvent.id, StripeEvent.status).where(
                StripeEvent.stripe_event_id == event["id"]
            )
        ).one()
    )
    event_id, status = row.id, row.status
    if not created and status == FAILED:
        requeued = session.execute(
            update(StripeEvent)
            .where(StripeEvent.id == event_id, StripeEvent.status == FAILED)
            .values(status=PENDING, attempts=0)
            .returning(StripeEvent.id)
        ).first()
        status = PENDING if requeued else status
    if status == PENDING:
        enqueue_after_commit(session, PROCESS_TASK, event_id)
    return Stored(event_id=event_id, status=status, duplicate=not created)


def unprocessed_event_ids(
    session: Session, older_than: timedelta, stuck_after: timedelta, limit: int = 1000
) -> list[int]:
    """Pending events whose task was lost: never attempted (the broker was down when they came,
    a worker died mid-run), or still pending long after every retry should have run."""
    now = utcnow()
    return list(
        session.scalars(
            select(StripeEvent.id)
            .where(
                StripeEvent.status == PENDING,
                or_(
                    and_(StripeEvent.attempts == 0, StripeEvent.received_at <= now - older_than),
                    StripeEvent.received_at <= now - stuck_after,
                ),
            )
            .order_by(StripeEvent.id)
            .limit(limit)
        )
    )


def list_events(session: Session, *, failed_only: bool, limit: int) -> list[StripeEvent]:
    query = select(StripeEvent).order_by(StripeEvent.id.desc()).limit(limit)
    if failed_only:
        query = query.where(StripeEvent.status == FAILED)
    return list(session.scalars(query))


def find_event_id(session: Session, reference: str) -> int | None:
    """Our row id for either our own id or Stripe's `evt_…` id."""
    if reference.isdigit():
        return session.scalar(select(StripeEvent.id).where(StripeEvent.id == int(reference)))
    return session.scalar(select(StripeEvent.id).where(StripeEvent.stripe_event_id == reference))


def event_ids_since(session: Session, since: datetime) -> list[int]:
    """Events received since `since` worth replaying: not those from the other Stripe mode."""
    return list(
        session.scalars(
            select(StripeEvent.id)
            .where(StripeEvent.received_at >= since, StripeEvent.status != IGNORED)
            .order_by(StripeEvent.id)
        )
    )
