"""A reader's promise to give an amount every month, every year or once."""

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, utcnow


class PledgeInterval(enum.StrEnum):
    MONTH = "month"
    YEAR = "year"
    ONCE = "once"


class PledgeStatus(enum.StrEnum):
    """Stripe's spelling, so finance staff see the same words in both places."""

    PENDING = "pending"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"
    FAILED = "failed"


class Pledge(Base):
    __tablename__ = "pledges"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("fee_cover_minor >= 0", name="fee_cover_not_negative"),
        CheckConstraint("interval IN ('month', 'year', 'once')", name="interval_known"),
        CheckConstraint(
            "status IN ('pending', 'active', 'past_due', 'paused', 'canceled', 'failed')",
            name="status_known",
        ),
        Index("ix_pledges_status_interval_currency", "status", "interval", "currency"),
        Index("ix_pledges_created_at", "created_at"),
        Index("ix_pledges_campaign", "campaign"),
        Index(
            "ix_pledges_activated_at",
            "activated_at",
            postgresql_include=[
                "currency",
                "interval",
                "status",
                "amount_minor",
                "fee_cover_minor",
                "campaign",
                "source",
                "article_url",
            ],
            postgresql_where=text("activated_at IS NOT NULL"),
        ),
        Index("ix_pledges_canceled_at", "canceled_at"),
        # Covers the MRR figures so reports never read the table (migration 0004_reports).
        Index(
            "ix_pledges_contributing",
            "currency",
            "interval",
            postgresql_include=["amount_minor", "fee_cover_minor", "status"],
            postgresql_where=text("status IN ('active', 'past_due')"),
        ),
        # The resume job reads only the paused pledges (migration 0006_savers).
        Index("ix_pledges_resumes_at", "resumes_at", postgresql_where=text("status = 'paused'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    reader_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("readers.id"), index=True)
    # What the reader chose; the card is charged amount_minor + fee_cover_minor.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_cover_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=PledgeStatus.PENDING)
    cover_fees: Mapped[bool] = mapped_column(Boolean, default=False)
    locale: Mapped[str] = mapped_column(String(10), default="en")

    source: Mapped[str | None] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(100))
    article_url: Mapped[str | None] = mapped_column(String(2048))

    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_setup_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_plan_id: Mapped[str | None] = mapped_column(String(255))

    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # SHA-256 of the create request, so a reused key with a different body is refused.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Cards tried at confirm; a pledge form may try a few, never a card tester's list.
    card_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    # `created` of the newest Stripe event or object state applied; older news never wins.
    stripe_state_at: Mapped[datetime | None] = mapped_column()
    current_period_end: Mapped[datetime | None] = mapped_column()
    # When Stripe resumes collection of a paused or skipped pledge (`pause_collection`).
    resumes_at: Mapped[datetime | None] = mapped_column()
    # The card paying this pledge and its expiry, for the warning a month before it runs out.
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(255), index=True)
    card_exp_month: Mapped[int | None] = mapped_column(SmallInteger)
    card_exp_year: Mapped[int | None] = mapped_column(SmallInteger)
    # The gift a "make it monthly" link turned into this pledge; unique, so it happens once.
    upgraded_from_pledge_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pledges.id"), unique=True
    )

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column()
    canceled_at: Mapped[datetime | None] = mapped_column()

    @property
    def charged_minor(self) -> int:
        return self.amount_minor + self.fee_cover_minor
