"""A newsroom system that hears about pledges, payments and readers: a URL and its secret."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, String, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, utcnow


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (CheckConstraint("status IN ('enabled', 'disabled')", name="status_known"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2048))
    # Patterns such as "pledge.*" or "payment.succeeded"; an event goes out if one matches.
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    # Whether payloads may carry the reader's email and name.
    personal_data: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept as issued ("whsec_…"): signing needs the secret itself, not a hash of it.
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="enabled")
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
