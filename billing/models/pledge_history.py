"""Every change to a pledge's status or amount, written by a database trigger, for MRR movement."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base


class PledgeHistory(Base):
    """One row per change; `movement` classifies the change of the reader's MRR in that currency.

    A PostgreSQL trigger on `pledges` writes these rows (see migration 0004_reports), so every
    writer (pledge service, webhook handlers, self-service) is recorded without knowing about it.
    """

    __tablename__ = "pledge_history"
    __table_args__ = (
        Index(
            "ix_pledge_history_changed_at",
            "changed_at",
            postgresql_include=[
                "currency",
                "interval",
                "status",
                "previous_status",
                "mrr_minor",
                "mrr_delta_minor",
                "movement",
            ],
        ),
        Index("ix_pledge_history_reader_id_currency", "reader_id", "currency"),
        Index(
            "ix_pledge_history_save_action",
            "changed_at",
            postgresql_include=["currency", "save_action"],
            postgresql_where=text("save_action IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    pledge_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pledges.id"), index=True)
    reader_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    changed_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))
    # NULL for the row written when the pledge was created.
    previous_status: Mapped[str | None] = mapped_column(String(16))
    interval: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    # The pledge's monthly-normalised amount after the change (0 when it no longer counts).
    mrr_minor: Mapped[int] = mapped_column(BigInteger)
    # Change of the pledge's MRR: new minus old.
    mrr_delta_minor: Mapped[int] = mapped_column(BigInteger)
    # new | expansion | contraction | churned | reactivated, judged on the reader's total MRR in
    # the currency; NULL when MRR did not change (say active → past_due).
    movement: Mapped[str | None] = mapped_column(String(16))
    # A choice on the save page (billing.manage.saves), written by the service, not the trigger:
    # cancel_started | lowered | skipped | paused | card. Such rows change nothing else
    # (status = previous_status, mrr_delta_minor = 0, movement NULL), so every sum ignores them.
    save_action: Mapped[str | None] = mapped_column(String(16))
