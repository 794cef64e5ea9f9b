"""Finance's view of a fiscal year's statements: one row per reader and currency."""

from sqlalchemy.orm import Session

from billing.reports.params import ReportError
from billing.settings import Settings
from billing.statements import queries, service
from billing.statements.fiscal import is_complete
from billing.statements.schemas import StatementReport, StatementRow


def statements_report(
    session: Session, settings: Settings, *, year: int, currency: str | None
) -> StatementReport:
    """The caller commits: a finished year's statements get their numbers here if they had none,
    so finance sees the numbers readers will see."""
    if not service.MIN_YEAR <= year <= service.MAX_YEAR:
        raise ReportError(
            f"year must be between {service.MIN_YEAR} and {service.MAX_YEAR}.", field="year"
        )
    fiscal = service.fiscal_year_of(settings, year)
    complete = is_complete(fiscal, service.today(settings))
    if complete:
        queries.allocate_numbers(session, fiscal, settings.statement_number_prefix)
    rows = [
        StatementRow(**row, net=row["gross"] - row["refunded"] - row["disputed"])
        for row in queries.statement_totals(session, fiscal, currency)
    ]
    return StatementReport(
        fiscal_year=year,
        from_date=fiscal.first_day,
        to_date=fiscal.last_day,
        timezone=fiscal.timezone,
        currency=currency,
        complete=complete,
        rows=rows,
    )
