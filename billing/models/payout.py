"""Money Stripe sent to the newsroom's bank, and the balance transactions it is made of."""

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, utcnow


class Payout(Base):
    __tablename__ = "payouts"
    __table_args__ = (Index("ix_payouts_arrival_date", "arrival_date", "currency"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    stripe_payout_id: Mapped[str] = mapped_column(String(255), unique=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Stripe's: pending, in_transit, paid, failed, canceled.
    status: Mapped[str] = mapped_column(String(32))
    arrival_date: Mapped[date] = mapped_column(Date)
    automatic: Mapped[bool] = mapped_column(Boolean, default=True)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    stripe_created_at: Mapped[datetime] = mapped_column()
    # `created` of the newest event applied; an older event never overwrites a newer status.
    stripe_state_at: Mapped[datetime] = mapped_column()
    # When Stripe's list of this payout's balance transactions was last read in full.
    transactions_loaded_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PayoutTransaction(Base):
    """One balance transaction in a payout; matched to our ledger by `source_id` when read."""

    __tablename__ = "payout_transactions"
    __table_args__ = (
        Index(
            "ix_payout_transactions_payout_id",
            "payout_id",
            postgresql_include=[
                "type", "reporting_category", "source_id", "amount_minor", "fee_minor",
                "net_minor",
            ],
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    stripe_balance_transaction_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    reporting_category: Mapped[str] = mapped_column(String(64))
    # ch_/py_ (a charge), re_/pyr_ (a refund), dp_/du_ (a dispute), po_ (the payout itself).
    source_id: Mapped[str | None] = mapped_column(String(255))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_created_at: Mapped[datetime] = mapped_column()
