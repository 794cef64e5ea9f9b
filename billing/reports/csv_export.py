"""CSV that spreadsheets open safely: stable columns from the row model, formulas neutralised."""

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

# A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets (OWASP).
FORMULA_TRIGGERS = "=+-@\t\r\n"
# Where a spreadsheet may start a new cell: a comma, semicolon, tab or pipe, depending on the
# reader's locale and import settings, or a new line. "x;=WEBSERVICE(...)" is one harmless cell
# in a comma locale and a formula in a semicolon one.
CELL_STARTS = re.compile(rf"(^|[,;\t|\r\n])( *)(?=[{re.escape(FORMULA_TRIGGERS)}])")
# A plain number, "-1404" or "-0.25", is a figure to every spreadsheet, never a formula.
PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def cell(value: Any) -> str | int:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    text = str(value)
    if PLAIN_NUMBER.fullmatch(text):
        return text
    # An apostrophe before each place a cell could begin with a trigger makes the spreadsheet
    # show the text instead of evaluating it, in whichever locale it splits the line.
    return CELL_STARTS.sub(r"\1\2'", text)


# cell() and the csv module's quoting (QUOTE_MINIMAL: a field holding a comma, a quote or a line
# break is quoted, its quotes doubled) spelt in SQL, for exports PostgreSQL writes itself. `{0}`
# is a text expression; SQL_CELL takes the two patterns above as SQL_CELL_PARAMS.
SQL_CELL = (
    "CASE WHEN {0} ~ :plain_number THEN {0}"
    r" ELSE regexp_replace({0}, :cell_starts, '\1\2''', 'g') END"
)
SQL_CELL_PARAMS = {
    "plain_number": f"^(?:{PLAIN_NUMBER.pattern})$",
    "cell_starts": CELL_STARTS.pattern,
}
SQL_CSV_FIELD = (
    r"""CASE WHEN {0} ~ '[,"\r\n]' THEN '"' || replace({0}, '"', '""') || '"' ELSE {0} END"""
)


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
