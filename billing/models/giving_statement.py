"""The number of a reader's giving statement for a fiscal year, given out once and kept."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billing.db import Base, utcnow


class GivingStatement(Base):
    """One row per reader and fiscal year; the row exists so the number never changes.

    A number derived from the ledger alone would move when a late row arrives or the prefix
    setting changes; a tax document that was handed out must keep the number printed on it.
    """

    __tablename__ = "giving_statements"
    __table_args__ = (UniqueConstraint("reader_id", "fiscal_year"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    reader_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("readers.id"))
    fiscal_year: Mapped[int] = mapped_column(Integer)
    # e.g. "S-2026-000042": STATEMENT_NUMBER_PREFIX, the fiscal year, this row's id.
    number: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
