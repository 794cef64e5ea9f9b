"""The webhook inbox: each Stripe event stored once under its id, and which ones need a run."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import StripeEvent
from webhooks.shapes import timestamp

PROCESS_TASK = "webhooks.process_event"
DRAIN_TASK = "webhooks.drain_inbox"
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


# The common case in one round trip: a new event is inserted and answered. The raw body goes in
# as the jsonb text, so nothing re-serialises what Stripe sent.
_INSERT = """
INSERT INTO stripe_events (stripe_event_id, type, livemode, api_version, stripe_created_at,
                           payload, status, attempts, received_at)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, 0, %s)
ON CONFLICT (stripe_event_id) DO NOTHING
RETURNING id, status
"""
# A duplicate of a failed event goes back to pending: Stripe redelivering is the natural moment
# to try again. Any other duplicate changes nothing.
_REQUEUE = """
UPDATE stripe_events SET status = 'pending', attempts = 0, run_after = NULL
WHERE stripe_event_id = %s AND status = 'failed'
RETURNING id, status
"""
_EXISTING = "SELECT id, status FROM stripe_events WHERE stripe_event_id = %s"


async def store_event(
    pool: AsyncConnectionPool, body: bytes, event: dict[str, Any], *, livemode: bool
) -> Stored:
    """Insert the event unless its id is known; committed when this returns.

    Plain SQL on a psycopg connection, on the event loop: the webhook's whole job is this one
    durable insert, and an ORM session and a thread hop cost more than the insert itself.
    """
    # An event from the other mode (a live event at a test deployment) is kept, never applied.
    status = PENDING if bool(event.get("livemode")) == livemode else IGNORED
    values = (
        event["id"], event["type"], bool(event.get("livemode")), event.get("api_version"),
        timestamp(event["created"]), body.decode(), status, utcnow(),
    )  # fmt: skip
    async with pool.connection() as connection:  # autocommit: each statement is durable
        row = await (await connection.execute(_INSERT, values)).fetchone()
        created = row is not None
        if row is None:
            row = await (await connection.execute(_REQUEUE, (event["id"],))).fetchone()
        if row is None:
            row = await (await connection.execute(_EXISTING, (event["id"],))).fetchone()
    assert row is not None
    return Stored(event_id=row[0], status=row[1], duplicate=not created)


def unprocessed_event_ids(
    session: Session, older_than: timedelta, stuck_after: timedelta, limit: int = 1000
) -> list[int]:
    """Pending events whose wake-up was lost: never attempted (the broker was down when they
    came, a worker died mid-run), due for a retry for a while, or still pending long after every
    retry should have run."""
    now = utcnow()
    return list(
        session.scalars(
            select(StripeEvent.id)
            .where(
                StripeEvent.status == PENDING,
                or_(
                    and_(StripeEvent.attempts == 0, StripeEvent.received_at <= now - older_than),
                    StripeEvent.run_after <= now - older_than,
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
