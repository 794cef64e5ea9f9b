"""What `/v1/endpoints` takes and answers; secrets appear only in the answers that create them."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from billing.models import OutgoingEvent, WebhookDelivery, WebhookEndpoint


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, examples=["https://crm.example.org/hooks/pledges"])
    events: list[str] = Field(min_length=1, examples=[["pledge.*", "payment.*"]])
    personal_data: bool = False
    description: str | None = Field(default=None, max_length=200)


class Endpoint(BaseModel):
    id: int
    url: str
    events: list[str]
    personal_data: bool
    status: str
    disabled_reason: str | None
    description: str | None
    secret_rotated_until: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookEndpoint) -> "Endpoint":
        return cls(
            id=row.id, url=row.url, events=row.event_types, personal_data=row.personal_data,
            status=row.status, disabled_reason=row.disabled_reason, description=row.description,
            secret_rotated_until=row.previous_secret_expires_at, created_at=row.created_at,
        )  # fmt: skip


class EndpointWithSecret(Endpoint):
    """The one answer that carries the signing secret: store it, it is not shown again."""

    secret: str


class EndpointList(BaseModel):
    items: list[Endpoint]


class Delivery(BaseModel):
    id: int
    event_id: str
    event_type: str
    replay: bool
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_duration_ms: int | None
    last_response: str | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookDelivery, event: OutgoingEvent) -> "Delivery":
        waiting = row.status in ("pending", "delivering")
        return cls(
            id=row.id, event_id=event.event_id, event_type=event.type, replay=row.replay,
            status=row.status, attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if waiting else None,
            last_attempt_at=row.last_attempt_at, last_status_code=row.last_status_code,
            last_duration_ms=row.last_duration_ms, last_response=row.last_response,
            last_error=row.last_error, delivered_at=row.delivered_at, created_at=row.created_at,
        )  # fmt: skip


class DeliveryList(BaseModel):
    items: list[Delivery]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime = Field(description="Every subscribed event since this moment (ISO 8601).")


class ReplayQueued(BaseModel):
    queued: int
