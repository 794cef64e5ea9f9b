"""Managing endpoints (add, disable, enable, rotate, remove), their delivery log and replays.

Functions take the caller's session and never commit; deliveries are enqueued after commit.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.endpoints import network, queries
from billing.endpoints.events import DELIVER_TASK, EVENT_TYPES, matches, queue_deliveries
from billing.endpoints.signing import new_secret
from billing.models import OutgoingEvent, Reader, WebhookDelivery, WebhookEndpoint
from billing.notifications import SEND_EMAIL_TASK
from billing.outbox import queue_email
from billing.settings import Settings
from billing.task_queue import enqueue_after_commit

log = structlog.get_logger()
DISABLED_TEMPLATE = "endpoint_disabled"


class EndpointError(Exception):
    """A request about endpoints that cannot be done; the message says why."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class NewSecret:
    """An endpoint and its signing secret, the one time the secret is shown."""

    endpoint: WebhookEndpoint
    secret: str


def parse_event_types(patterns: list[str] | str) -> list[str]:
    """`pledge.*,payment.failed` → patterns, each matching at least one event type."""
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    cleaned = [pattern.strip() for pattern in patterns if pattern.strip()]
    if not cleaned:
        raise EndpointError("Name at least one event type, e.g. pledge.* or payment.failed.")
    for pattern in cleaned:
        if not any(matches([pattern], event_type) for event_type in EVENT_TYPES):
            raise EndpointError(
                f"{pattern!r} matches no event; known events: {', '.join(EVENT_TYPES)}."
            )
    return cleaned


def add_endpoint(
    session: Session,
    settings: Settings,
    *,
    url: str,
    event_types: list[str] | str,
    personal_data: bool = False,
    description: str | None = None,
) -> NewSecret:
    """Check the URL (a public address unless private ones are allowed) and store it."""
    patterns = parse_event_types(event_types)
    _check_url(url, settings)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=url.strip(), event_types=patterns, personal_data=personal_data, secret=secret,
        status="enabled", description=description,
    )  # fmt: skip
    session.add(endpoint)
    session.flush()
    log.info("endpoint_added", endpoint_id=endpoint.id, events=patterns)
    return NewSecret(endpoint=endpoint, secret=secret)


def get_endpoint(
    session: Session, endpoint_id: int, *, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = session.get(
        WebhookEndpoint, endpoint_id, with_for_update=for_update, populate_existing=for_update
    )
    if endpoint is None:
        raise EndpointError(f"No endpoint with id {endpoint_id}.", status_code=404)
    return endpoint


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    return queries.endpoints(session)


def disable_endpoint(
    session: Session, *, endpoint_id: int, reason: str = "disabled by an admin"
) -> WebhookEndpoint:
    """Stop delivering; pending deliveries wait until the endpoint is enabled again."""
    endpoint = get_endpoint(session, endpoint_id, for_update=True)
    endpoint.status, endpoint.disabled_reason = "disabled", reason
    session.flush()
    return endpoint


def enable_endpoint(session: Session, settings: Settings, *, endpoint_id: int) -> WebhookEndpoint:
    """Deliver again, starting with what waited while it was disabled."""
    endpoint = get_endpoint(session, endpoint_id, for_update=True)
    _check_url(endpoint.url, settings)
    endpoint.status, endpoint.disabled_reason = "enabled", None
    session.flush()
    for delivery_id in queries.pending_delivery_ids(session, endpoint_id=endpoint.id):
        enqueue_after_commit(session, DELIVER_TASK, delivery_id)
    return endpoint


def rotate_secret(session: Session, settings: Settings, *, endpoint_id: int) -> NewSecret:
    """A new secret; the old one keeps signing too for OUTGOING_WEBHOOK_SECRET_OVERLAP_HOURS."""
    endpoint = get_endpoint(session, endpoint_id, for_update=True)
    overlap = timedelta(hours=settings.outgoing_webhook_secret_overlap_hours)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = utcnow() + overlap
    endpoint.secret = new_secret()
    session.flush()
    log.info("endpoint_secret_rotated", endpoint_id=endpoint.id)
    return NewSecret(endpoint=endpoint, secret=endpoint.secret)


def remove_endpoint(session: Session, *, endpoint_id: int) -> None:
    """Forget the endpoint and its delivery log (the events themselves stay)."""
    session.delete(get_endpoint(session, endpoint_id, for_update=True))
    session.flush()


@dataclass(frozen=True)
class EndpointHealth:
    """One dashboard row: how an endpoint's deliveries are going."""

    id: int
    url: str
    status: str
    waiting: int
    failed: int
    last_delivered_at: datetime | None


def overview(session: Session) -> list[EndpointHealth]:
    return [
        EndpointHealth(id=row[0], url=row[1], status=row[2], waiting=row[3], failed=row[4],
                       last_delivered_at=row[5])
        for row in queries.overview(session)
    ]  # fmt: skip


def delivery_log(
    session: Session, *, endpoint_id: int, limit: int = 50
) -> list[tuple[WebhookDelivery, OutgoingEvent]]:
    get_endpoint(session, endpoint_id)
    return queries.deliveries(session, endpoint_id=endpoint_id, limit=limit)


def replay(session: Session, *, endpoint_id: int, since: datetime) -> int:
    """Deliver again every event since `since` that the endpoint subscribes to; how many.

    Each replay is a new delivery under the event's own `webhook-id`, so a receiver that
    already has it can tell.
    """
    endpoint = get_endpoint(session, endpoint_id)
    targets = [
        (endpoint.id, event.id, event.reader_id)
        for event in queries.events_since(session, since=since)
        if matches(endpoint.event_types, event.type)
    ]
    return queue_deliveries(session, targets, replay=True)


# ---- used by the delivery worker ---------------------------------------------------------


def envelope(session: Session, *, event: OutgoingEvent, endpoint: WebhookEndpoint) -> str:
    """The body sent: the event, with the reader's email and name if this endpoint may see them."""
    data: dict[str, Any] = dict(event.data)
    if endpoint.personal_data and event.type != "reader.erased" and event.reader_id:
        reader = session.get(Reader, event.reader_id)
        if reader is not None and reader.erased_at is None:
            data["reader"] = {**data.get("reader", {}), "email": reader.email, "name": reader.name}
    body = {
        "id": event.event_id,
        "type": event.type,
        "version": event.version,
        "timestamp": event.occurred_at.isoformat(),
        "data": data,
    }
    return orjson.dumps(body).decode()


def retry_delay(attempts: int, settings: Settings) -> float:
    """Doubling from the base to the ceiling, plus up to a tenth more so retries spread out."""
    ceiling = min(
        settings.outgoing_webhook_retry_max_seconds,
        settings.outgoing_webhook_retry_base_seconds * 2 ** (attempts - 1),
    )
    return random.uniform(ceiling, ceiling * 1.1)  # noqa: S311  (jitter, not a secret)


def give_up(
    session: Session, settings: Settings, *, endpoint: WebhookEndpoint, reason: str
) -> None:
    """Disable an endpoint that keeps failing and tell the admins, by the mail outbox."""
    endpoint.status, endpoint.disabled_reason = "disabled", reason[:1000]
    log.error("endpoint_disabled", endpoint_id=endpoint.id, reason=reason)
    recipients = settings.admin_emails or (
        [settings.newsroom_support_email] if settings.newsroom_support_email else []
    )
    if not recipients:
        log.warning("endpoint_disabled_nobody_to_tell", endpoint_id=endpoint.id)
    stamp = utcnow().strftime("%Y%m%d%H%M%S")
    context = {"endpoint": {"id": endpoint.id, "url": endpoint.url, "reason": reason[:1000]}}
    for address in recipients:
        key = f"endpoint_disabled:{endpoint.id}:{stamp}:{address}"
        if queue_email(
            session, dedupe_key=key, template=DISABLED_TEMPLATE, to_email=address, context=context
        ):
            enqueue_after_commit(session, SEND_EMAIL_TASK, key)


def _check_url(url: str, settings: Settings) -> None:
    try:
        network.check_url(url, allow_private=settings.outgoing_webhook_allow_private)
    except (ValueError, network.RefusedAddress, network.DeliveryError) as error:
        raise EndpointError(f"Cannot deliver to {url}: {error}") from None
