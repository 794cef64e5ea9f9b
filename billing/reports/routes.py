"""`/v1/reports/*`: every report as JSON, or as CSV when the client asks for it."""

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from billing.dependencies import get_session
from billing.reports import failures, lists, queries
from billing.reports.auth import Principal, report_reader
from billing.reports.csv_export import columns_of, csv_lines
from billing.reports.params import (
    Period,
    ReportError,
    parse_granularity,
    parse_limit,
    parse_period,
    parse_top,
)
from billing.reports.schemas import (
    Attribution,
    AttributionRow,
    Movement,
    MovementRow,
    PaymentPage,
    PledgePage,
    Recovery,
    RecoveryRow,
    Revenue,
    RevenueRow,
    Summary,
    SummaryCurrencyRow,
)
from billing.settings import get_settings

ERROR_SHAPE = {
    "content": {"application/json": {"example": {"message": "…", "detail": []}}},
}
router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    responses={
        401: {"description": "No API key, or one that is unknown or revoked."} | ERROR_SHAPE,
        403: {"description": "The key's role may not do this (email filter: admin)."} | ERROR_SHAPE,
        422: {"description": "A parameter the report cannot use; `message` says which."}
        | ERROR_SHAPE,
    },
)

Caller = Annotated[Principal, Depends(report_reader)]
DbSession = Annotated[Session, Depends(get_session)]
FromDate = Annotated[
    str | None, Query(alias="from", description="First day, YYYY-MM-DD, reporting time zone.")
]
ToDate = Annotated[str | None, Query(alias="to", description="Last day (inclusive), YYYY-MM-DD.")]
Currency = Annotated[str | None, Query(description="Only this currency, e.g. eur.")]
Format = Annotated[
    str | None, Query(description="json or csv; `Accept: text/csv` also asks for CSV.")
]


def wants_csv(request: Request, format_value: str | None) -> bool:
    if format_value is not None:
        if format_value not in ("json", "csv"):
            raise ReportError("format must be json or csv.", field="format")
        return format_value == "csv"
    return "text/csv" in request.headers.get("accept", "")


def csv_response(name: str, columns: list[str], rows: Iterable[BaseModel]) -> StreamingResponse:
    return StreamingResponse(
        csv_lines(columns, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def period_of(
    from_value: str | None, to_value: str | None, currency: str | None, months: int
) -> Period:
    return parse_period(from_value, to_value, currency, get_settings().reporting_timezone, months)


def file_name(report: str, period: Period) -> str:
    return f"{report}-{period.from_date}-{period.to_date}"


@router.get("/summary", response_model=Summary)
def summary_report(
    request: Request, _caller: Caller, session: DbSession,
    from_: FromDate = None, to: ToDate = None, currency: Currency = None, format: Format = None,
) -> Any:  # fmt: skip
    """Pledges, MRR and risk at the end of the period (default: this month so far)."""
    period = period_of(from_, to, currency, months=1)
    as_csv = wants_csv(request, format)
    report = queries.summary(session, period)
    if as_csv:
        columns = columns_of(SummaryCurrencyRow)
        return csv_response(file_name("summary", period), columns, report.by_currency)
    return report


@router.get("/revenue", response_model=Revenue)
def revenue_report(
    request: Request, _caller: Caller, session: DbSession,
    from_: FromDate = None, to: ToDate = None, currency: Currency = None, format: Format = None,
    granularity: Annotated[str, Query(description="day, week or month.")] = "month",
) -> Any:  # fmt: skip
    """Gross, refunded, disputed, fees and net per month (or day, week) and currency."""
    period = period_of(from_, to, currency, months=12)
    grain = parse_granularity(granularity, period)
    as_csv = wants_csv(request, format)
    report = queries.revenue(session, period, grain)
    if as_csv:
        return csv_response(file_name("revenue", period), columns_of(RevenueRow), report.rows)
    return report


@router.get("/movement", response_model=Movement)
def movement_report(
    request: Request, _caller: Caller, session: DbSession,
    from_: FromDate = None, to: ToDate = None, currency: Currency = None, format: Format = None,
) -> Any:  # fmt: skip
    """MRR movement per month: new, expansion, contraction, churned, reactivated."""
    period = period_of(from_, to, currency, months=12)
    as_csv = wants_csv(request, format)
    report = queries.movement(session, period)
    if as_csv:
        return csv_response(file_name("movement", period), columns_of(MovementRow), report.rows)
    return report


@router.get("/recovery", response_model=Recovery)
def recovery_report(
    request: Request, _caller: Caller, session: DbSession,
    from_: FromDate = None, to: ToDate = None, currency: Currency = None, format: Format = None,
) -> Any:  # fmt: skip
    """Failed payments by month: recovered (after which reminder), lost, still retrying."""
    period = period_of(from_, to, currency, months=12)
    as_csv = wants_csv(request, format)
    report = queries.recovery(session, period)
    if as_csv:
        rows = [*report.rows, *report.totals]
        return csv_response(file_name("recovery", period), columns_of(RecoveryRow), rows)
    return report


@router.get("/attribution", response_model=Attribution)
def attribution_report(
    request: Request, _caller: Caller, session: DbSession,
    from_: FromDate = None, to: ToDate = None, currency: Currency = None, format: Format = None,
    top: Annotated[int, Query(description="Values per dimension and currency, by MRR.")] = 100,
) -> Any:  # fmt: skip
    """Pledges started in the period and their MRR, by campaign, source and article."""
    period = period_of(from_, to, currency, months=12)
    as_csv = wants_csv(request, format)
    report = queries.attribution(session, period, parse_top(top))
    if as_csv:
        columns = columns_of(AttributionRow)
        return csv_response(file_name("attribution", period), columns, report.rows)
    return report


def list_filters(
    status: Annotated[str | None, Query()] = None,
    currency: Currency = None,
    interval: Annotated[str | None, Query(description="month, year or once.")] = None,
    campaign: Annotated[str | None, Query()] = None,
    email: Annotated[str | None, Query(description="Reader's email (admin keys only).")] = None,
    from_: Annotated[str | None, Query(alias="from", description="Created on or after.")] = None,
    to: Annotated[str | None, Query(description="Created on or before.")] = None,
) -> lists.ListFilters:
    timezone = get_settings().reporting_timezone
    return lists.ListFilters(status, currency, interval, campaign, email, from_, to, timezone)


Filters = Annotated[lists.ListFilters, Depends(list_filters)]
Cursor = Annotated[str | None, Query(description="next_cursor from the previous page.")]
Limit = Annotated[int, Query(description="Items per page, at most 1000.")]


@router.get("/pledges", response_model=PledgePage)
def pledges_list(
    request: Request, caller: Caller, session: DbSession, filters: Filters,
    cursor: Cursor = None, limit: Limit = 100, format: Format = None,
) -> Any:  # fmt: skip
    """Pledges, newest first; as CSV every matching pledge in one download."""
    as_csv = wants_csv(request, format)
    if as_csv:
        statement = lists.pledge_statement(filters, caller, None)
        columns = columns_of(lists.pledge_item_model(caller))
        return csv_response("pledges", columns, lists.all_pledge_items(statement, caller))
    statement = lists.pledge_statement(filters, caller, cursor)
    return lists.pledge_page(session, statement, caller, parse_limit(limit))


@router.get("/payments", response_model=PaymentPage)
def payments_list(
    request: Request, caller: Caller, session: DbSession, filters: Filters,
    cursor: Cursor = None, limit: Limit = 100, format: Format = None,
) -> Any:  # fmt: skip
    """Payments, newest first, with their Stripe ids; as CSV every matching payment."""
    as_csv = wants_csv(request, format)
    if as_csv:
        statement = lists.payment_statement(filters, caller, None)
        columns = columns_of(lists.payment_item_model(caller))
        return csv_response("payments", columns, lists.all_payment_items(statement, caller))
    statement = lists.payment_statement(filters, caller, cursor)
    return lists.payment_page(session, statement, caller, parse_limit(limit))


@router.get("/failures", response_model=failures.FailurePage)
def failures_list(
    request: Request, caller: Caller, session: DbSession,
    from_: Annotated[str | None, Query(alias="from", description="Failed on or after.")] = None,
    to: Annotated[str | None, Query(description="Failed on or before.")] = None,
    currency: Currency = None,
    outcome: Annotated[
        str | None, Query(description="recovered, still_failing or canceled.")
    ] = None,
    cursor: Cursor = None, limit: Limit = 100, format: Format = None,
) -> Any:  # fmt: skip
    """Failed payments, latest first: decline reason, reminders sent, and what happened next."""
    filters = failures.FailureFilters(
        from_value=from_, to_value=to, currency=currency, outcome=outcome,
        timezone=get_settings().reporting_timezone,
    )  # fmt: skip
    if wants_csv(request, format):
        columns = columns_of(failures.item_model(caller))
        return csv_response("failures", columns, failures.all_failures(filters, caller))
    return failures.failure_page(session, filters, caller, cursor, parse_limit(limit))


def report_error_response(error: ReportError) -> Response:
    detail = [{"loc": ["query", error.field] if error.field else [], "msg": error.message,
               "type": "report_error"}]  # fmt: skip
    return JSONResponse(
        {"message": error.message, "detail": detail},
        status_code=error.status_code,
        headers=error.headers,
    )
