"""The webhook inbox: each Stripe event stored once under its id, and which ones need a run."""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.manage.data_rights import scrub_if_erased
from billing.models import StripeEvent
from billing.task_queue import enqueue_after_commit
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


# Events arriving together go in as one statement (one round trip, one WAL flush). The raw
# bodies go in as the jsonb text, so nothing re-serialises what Stripe sent.
_INSERT = """
INSERT INTO stripe_events (stripe_event_id, type, livemode, api_version, stripe_created_at,
                           payload, status, attempts, received_at)
SELECT event_id, type, livemode, api_version, created_at, payload, status, 0, received_at
FROM unnest(%b::text[], %b::text[], %b::bool[], %b::text[], %b::timestamptz[], %b::jsonb[],
            %b::text[], %b::timestamptz[])
     AS new (event_id, type, livemode, api_version, created_at, payload, status, received_at)
ON CONFLICT (stripe_event_id) DO NOTHING
RETURNING stripe_event_id, id, status
"""
# A duplicate of a failed event goes back to pending: Stripe redelivering is the natural moment
# to try again. Any other duplicate changes nothing.
_REQUEUE = """
UPDATE stripe_events SET status = 'pending', attempts = 0, run_after = NULL
WHERE stripe_event_id = %s AND status = 'failed'
RETURNING id, status
"""
_EXISTING = "SELECT id, status FROM stripe_events WHERE stripe_event_id = %s"
# Columns of one event, in _INSERT's order.
Row = tuple[str, str, bool, str | None, datetime | None, str, str, datetime]
MAX_GROUP = 200


class InboxWriter:
    """Stores webhook events durably, many concurrent ones in one INSERT on the event loop.

    Plain SQL on autocommit psycopg connections: each statement is committed when it returns,
    so an event is durable before its request is answered. While one statement waits for its
    commit, the events that arrive meanwhile queue up and the next flusher takes them all.
    """

    def __init__(self, pool: AsyncConnectionPool, flushers: int) -> None:
        self._pool = pool
        self._waiting: list[tuple[Row, asyncio.Future[Stored]]] = []
        self._ready = asyncio.Event()
        self._flushers = [asyncio.create_task(self._flush_forever()) for _ in range(flushers)]

    async def store(self, body: bytes, event: dict[str, Any], *, livemode: bool) -> Stored:
        # An event from the other mode (a live event at a test deployment) is kept, never
        # applied.
        status = PENDING if bool(event.get("livemode")) == livemode else IGNORED
        row: Row = (
            event["id"], event["type"], bool(event.get("livemode")), event.get("api_version"),
            timestamp(event["created"]), body.decode(), status, utcnow(),
        )  # fmt: skip
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        self._ready.set()
        return await future

    async def close(self) -> None:
        for flusher in self._flushers:
            flusher.cancel()
        await asyncio.gather(*self._flushers, return_exceptions=True)

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            if not self._waiting:
                self._ready.clear()
            if not group:
                continue
            await self._settle(group)

    async def _settle(self, group: list[tuple[Row, asyncio.Future[Stored]]]) -> None:
        try:
            stored = await self._write([row for row, _future in group])
        except Exception as error:
            if len(group) > 1:
                # One event the database refuses must not fail the others: each alone.
                for item in group:
                    await self._settle([item])
                return
            _row, future = group[0]
            if not future.done():  # its request answers 5xx; Stripe sends it again
                future.set_exception(error)
            return
        for (_row, future), result in zip(group, stored, strict=True):
            if not future.done():
                future.set_result(result)

    async def _write(self, rows: list[Row]) -> list[Stored]:
        columns = [list(column) for column in zip(*rows, strict=True)]
        async with self._pool.connection() as connection:
            # Binary parameters (%b): a text array of event bodies dumped as text has every
            # quote escaped by a regular expression, 40% of this route's CPU.
            cursor = await connection.execute(_INSERT, columns)
            created = {
                event_id: (row_id, status) for event_id, row_id, status in await cursor.fetchall()
            }
            stored = []
            for row in rows:
                event_id = row[0]
                if event_id in created:
                    row_id, status = created.pop(event_id)
                    stored.append(Stored(event_id=row_id, status=status, duplicate=False))
                    continue
                # Known before, or twice in this group: the stored row answers.
                found = await (await connection.execute(_REQUEUE, (event_id,))).fetchone()
                if found is None:
                    found = await (await connection.execute(_EXISTING, (event_id,))).fetchone()
                assert found is not None
                stored.append(Stored(event_id=found[0], status=found[1], duplicate=True))
        return stored


def store_event(session: Session, event: dict[str, Any], *, livemode: bool) -> Stored:
    """One event stored in the caller's transaction (replays, the drift check); the webhook
    route stores through InboxWriter instead. Queues a run (after commit) when it needs one.

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
