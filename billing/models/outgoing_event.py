"""Something that happened to a pledge, payment or reader, as the newsroom's systems are told."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, utcnow


class OutgoingEvent(Base):
    __tablename__ = "outgoing_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The `webhook-id` every delivery and replay of this event carries.
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Deliveries about one reader go out in order; personal data is looked up at delivery.
    reader_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    # Ids, statuses and amounts only: never an email or a name.
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
