"""Revenue per quarter hour and currency, kept by a trigger on payments for fast reports."""

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base


class RevenueRollup(Base):
    """Sums over payments with `paid_at` and status paid or refunded, by `paid_at`'s quarter hour.

    Written only by the `payments_rollup_revenue` trigger (migration 0004_reports); the function
    `rebuild_revenue_rollup()` recomputes it from payments after a load with triggers off.
    """

    __tablename__ = "revenue_rollup"

    bucket_at: Mapped[datetime] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    payments: Mapped[int] = mapped_column(BigInteger)
    gross_minor: Mapped[int] = mapped_column(BigInteger)
    fees_minor: Mapped[int] = mapped_column(BigInteger)
    fees_unknown_payments: Mapped[int] = mapped_column(BigInteger)
