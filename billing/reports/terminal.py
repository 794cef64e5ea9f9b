"""Reports on the command line: the API's queries, printed as a table, CSV or JSON."""

from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy.orm import Session

from billing.money import format_money
from billing.reports import queries
from billing.reports.csv_export import columns_of, csv_lines
from billing.reports.params import Period, parse_granularity, parse_period
from billing.reports.schemas import (
    AttributionRow,
    MovementRow,
    RecoveryRow,
    RevenueRow,
    SummaryCurrencyRow,
)

REPORTS = ("summary", "revenue", "movement", "recovery", "attribution")
FORMATS = ("table", "csv", "json")
# Columns that hold money: shown as "20,00 €" in tables, always minor units in CSV and JSON.
MONEY_COLUMNS = frozenset({
    "mrr", "average_pledge", "amount_at_risk", "gross", "refunded", "disputed", "fees", "net",
    "mrr_start", "new", "expansion", "contraction", "churned", "reactivated", "net_change",
    "mrr_end", "failed_amount", "recovered_amount", "lost_amount", "one_time_amount",
})  # fmt: skip


def _report(
    session: Session, name: str, period: Period, granularity: str
) -> tuple[BaseModel, type[BaseModel], list[BaseModel]]:
    """The report, the model of its table's rows, and those rows (as the CSV download has them)."""
    if name == "summary":
        summary = queries.summary(session, period)
        return summary, SummaryCurrencyRow, list(summary.by_currency)
    if name == "revenue":
        revenue = queries.revenue(session, period, parse_granularity(granularity, period))
        return revenue, RevenueRow, list(revenue.rows)
    if name == "movement":
        movement = queries.movement(session, period)
        return movement, MovementRow, list(movement.rows)
    if name == "recovery":
        recovery = queries.recovery(session, period)
        return recovery, RecoveryRow, [*recovery.rows, *recovery.totals]
    attribution = queries.attribution(session, period)
    return attribution, AttributionRow, list(attribution.rows)


def _table(columns: list[str], rows: list[BaseModel]) -> str:
    def show(column: str, values: dict[str, Any]) -> str:
        value = values[column]
        if value is None:
            return "-"
        if column in MONEY_COLUMNS and isinstance(value, int):
            return format_money(value, values["currency"])
        return str(value)

    cells = [[show(column, row.model_dump(mode="json")) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)
    ]
    lines = [" ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append(" ".join("-" * w for w in widths))
    lines += [" ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines) + "\n"


def render(
    session: Session, name: str, from_value: str | None, to_value: str | None,
    currency: str | None, output: str, granularity: str, timezone: str,
) -> str:  # fmt: skip
    """The report as text; ReportError for parameters the API would also refuse."""
    default_months = 1 if name == "summary" else 12
    period = parse_period(from_value, to_value, currency, timezone, default_months)
    report, row_model, rows = _report(session, name, period, granularity)
    if output == "json":
        return orjson.dumps(report.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode()
    columns = columns_of(row_model)
    if output == "csv":
        return "".join(csv_lines(columns, rows))
    heading = f"{name} {period.from_date} to {period.to_date} ({period.timezone})\n"
    return heading + (_table(columns, rows) if rows else "no rows\n")
