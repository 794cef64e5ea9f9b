"""CSV that spreadsheets open safely: stable columns from the row model, formulas neutralised."""

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

# A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets (OWASP).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def cell(value: Any) -> str | int:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    text = str(value)
    if text.startswith(FORMULA_TRIGGERS):
        # A leading apostrophe makes the spreadsheet show the text instead of evaluating it.
        return "'" + text
    return text


def csv_lines(columns: list[str], rows: Iterable[BaseModel]) -> Iterator[str]:
    """The header, then one line per row, produced as the rows arrive."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return line

    writer.writerow(columns)
    yield flush()
    for row in rows:
        # The JSON forms, so a CSV cell reads exactly like the same field in the JSON answer.
        values = row.model_dump(mode="json")
        writer.writerow([cell(values[column]) for column in columns])
        yield flush()


def columns_of(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)
