"""Money that moved: one row per paid or failed Stripe invoice or one-time PaymentIntent."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, utcnow


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        CheckConstraint("refunded_minor >= 0", name="refunded_not_negative"),
        CheckConstraint("disputed_minor >= 0", name="disputed_not_negative"),
        CheckConstraint(
            "status IN ('pending', 'paid', 'failed', 'refunded', 'void')", name="status_known"
        ),
        Index("ix_payments_paid_at_currency", "paid_at", "currency"),
        Index("ix_payments_status_created_at", "status", "created_at"),
        Index(
            "ix_payments_failed_at",
            "failed_at",
            postgresql_include=[
                "currency",
                "amount_minor",
                "attempt_count",
                "status",
                "paid_at",
                "next_attempt_at",
                "pledge_id",
            ],
            postgresql_where=text("failed_at IS NOT NULL"),
        ),
        # The payments list's order, newest first, and its cursor.
        Index("ix_payments_created_at_id", "created_at", "id"),
        # Covers the revenue report and a month's journal export (its references too), so
        # neither reads the table (migrations 0004_reports, 0011_cohort_supporters).
        Index(
            "ix_payments_revenue",
            "paid_at",
            postgresql_include=[
                "currency",
                "amount_minor",
                "fee_minor",
                "status",
                "stripe_charge_id",
                "stripe_payment_intent_id",
                "stripe_invoice_id",
            ],
            postgresql_where=text("paid_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    pledge_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pledges.id"), index=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))

    status: Mapped[str] = mapped_column(String(16), default="pending")
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # From the balance transaction when Stripe has settled it; unknown until then.
    fee_minor: Mapped[int | None] = mapped_column(BigInteger)
    net_minor: Mapped[int | None] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    disputed_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    dispute_status: Mapped[str | None] = mapped_column(String(32))

    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(500))

    period_start: Mapped[datetime | None] = mapped_column()
    period_end: Mapped[datetime | None] = mapped_column()
    paid_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
