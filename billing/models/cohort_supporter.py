"""One row per supporter (a reader in one currency) with the facts the cohort report counts."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base


class CohortSupporter(Base):
    """What `cohort_supporter_facts` (a view over pledges, payments and pledge history) says of
    one supporter, stored so the report reads a row per supporter instead of every payment.

    Written only by the database (migration 0011_cohort_supporters): deferred triggers on
    `payments`, `pledges` and `pledge_history` recompute a supporter's row when a change of theirs
    commits; `rebuild_cohort_supporters()` recomputes every row after a load with triggers off.
    """

    __tablename__ = "cohort_supporters"

    reader_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    # The activation of their first recurring pledge in the currency, which names the cohort.
    started_at: Mapped[datetime] = mapped_column(index=True)
    campaign: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(100))
    article_url: Mapped[str | None] = mapped_column(String(2048))
    # NULL while a recurring pledge of theirs runs; then voluntary | failed_payment.
    churn: Mapped[str | None] = mapped_column(String(16))
    ended_at: Mapped[datetime | None] = mapped_column()
    recovered: Mapped[bool] = mapped_column()
    upgraded: Mapped[bool] = mapped_column()
    revenue_12m_minor: Mapped[int] = mapped_column(BigInteger)
