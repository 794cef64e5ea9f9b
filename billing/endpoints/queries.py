"""Every query over endpoints, events and deliveries: claims, order per reader, the log."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Row, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from billing.db import utcnow
from billing.models import OutgoingEvent, WebhookDelivery, WebhookEndpoint

UNFINISHED = ("pending", "delivering")


def _first_in_line() -> ColumnElement[bool]:
    """No earlier delivery to the same endpoint about the same reader is still unfinished.

    A delivery waiting for a retry holds back everything after it for that reader, so an
    endpoint never hears "canceled" before "activated".
    """
    earlier = aliased(WebhookDelivery)
    return ~exists().where(
        earlier.endpoint_id == WebhookDelivery.endpoint_id,
        earlier.reader_id == WebhookDelivery.reader_id,
        earlier.id < WebhookDelivery.id,
        earlier.status.in_(UNFINISHED),
    )


def _endpoint_enabled() -> ColumnElement[bool]:
    return exists().where(
        WebhookEndpoint.id == WebhookDelivery.endpoint_id, WebhookEndpoint.status == "enabled"
    )


def claim(session: Session, delivery_id: int, *, lease_seconds: float) -> WebhookDelivery | None:
    """Take the delivery for one attempt, atomically, if it is due, first in line and its
    endpoint is enabled; while delivering, `next_attempt_at` is the end of the claim's lease."""
    now = utcnow()
    return session.scalar(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status.in_(UNFINISHED),
            WebhookDelivery.next_attempt_at <= now,
            _endpoint_enabled(),
            _first_in_line(),
        )
        .values(
            status="delivering",
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        .returning(WebhookDelivery),
        execution_options={"synchronize_session": False},
    )


def locked_delivery(session: Session, delivery_id: int) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, with_for_update=True, populate_existing=True)


def next_in_line(session: Session, *, endpoint_id: int, reader_id: uuid.UUID | None) -> int | None:
    """The reader's next pending delivery to this endpoint, to send once one finishes."""
    if reader_id is None:
        return None
    return session.scalar(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.reader_id == reader_id,
            WebhookDelivery.status == "pending",
        )
        .order_by(WebhookDelivery.id)
        .limit(1)
    )


def due_delivery_ids(session: Session, *, grace: timedelta, limit: int) -> list[int]:
    """Deliveries whose task was lost: pending well past due, or a dead worker's claim."""
    now = utcnow()
    query = (
        select(WebhookDelivery.id)
        .where(
            or_(
                and_(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now - grace,
                ),
                and_(
                    WebhookDelivery.status == "delivering",
                    WebhookDelivery.next_attempt_at <= now,
                ),
            ),
            _endpoint_enabled(),
            _first_in_line(),
        )
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def pending_delivery_ids(session: Session, *, endpoint_id: int) -> list[int]:
    query = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status.in_(UNFINISHED),
            _first_in_line(),
        )
        .order_by(WebhookDelivery.id)
    )
    return list(session.scalars(query))


def deliveries(
    session: Session, *, endpoint_id: int, limit: int
) -> list[tuple[WebhookDelivery, OutgoingEvent]]:
    """The endpoint's delivery log, newest first."""
    query = (
        select(WebhookDelivery, OutgoingEvent)
        .join(OutgoingEvent, OutgoingEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [(delivery, event) for delivery, event in session.execute(query)]


def events_since(session: Session, *, since: datetime) -> list[OutgoingEvent]:
    query = (
        select(OutgoingEvent).where(OutgoingEvent.occurred_at >= since).order_by(OutgoingEvent.id)
    )
    return list(session.scalars(query))


def endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def overview(session: Session) -> list[Row[int, str, str, int, int, datetime | None]]:
    """Per endpoint: id, URL, status, deliveries waiting, deliveries failed, last success."""
    delivery = WebhookDelivery
    query = (
        select(
            WebhookEndpoint.id,
            WebhookEndpoint.url,
            WebhookEndpoint.status,
            func.count(delivery.id).filter(delivery.status.in_(UNFINISHED)),
            func.count(delivery.id).filter(delivery.status == "failed"),
            func.max(delivery.delivered_at),
        )
        .outerjoin(delivery, delivery.endpoint_id == WebhookEndpoint.id)
        .group_by(WebhookEndpoint.id)
        .order_by(WebhookEndpoint.id)
    )
    return list(session.execute(query))
