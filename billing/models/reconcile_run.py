"""One drift check of the ledger against Stripe: what it compared, replayed, left unexplained."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base


class ReconcileRun(Base):
    __tablename__ = "reconcile_runs"
    __table_args__ = (Index("ix_reconcile_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    days: Mapped[int] = mapped_column(Integer)
    # Stripe charges, refunds and disputes compared with the ledger.
    checked: Mapped[int] = mapped_column(Integer, default=0)
    missing: Mapped[int] = mapped_column(Integer, default=0)
    replayed: Mapped[int] = mapped_column(Integer, default=0)
    unexplained: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    # running → matches | drift | failed
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
