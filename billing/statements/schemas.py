"""The statements report's shapes; the CSV's columns are StatementRow's fields, in order."""

import uuid
from datetime import date

from pydantic import BaseModel


class StatementRow(BaseModel):
    """One reader and currency; amounts in minor units; net = gross - refunded - disputed."""

    reader_id: uuid.UUID
    reader_email: str | None
    reader_name: str | None
    statement_number: str | None
    currency: str
    payments: int
    gross: int
    refunded: int
    disputed: int
    net: int


class StatementReport(BaseModel):
    fiscal_year: int
    from_date: date
    to_date: date
    timezone: str
    currency: str | None
    # False while the year runs: its figures still grow and statements have no number yet.
    complete: bool
    rows: list[StatementRow]
