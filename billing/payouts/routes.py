"""`/v1/reports/payouts…`, `/v1/reports/journal` and `/v1/reports/drift`: thin routes."""

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from billing.payouts import queries, service
from billing.payouts.exports import LAYOUTS, csv_export
from billing.payouts.schemas import PayoutDetail, PayoutRow, Payouts, ReconcileRunView
from billing.reports.csv_export import columns_of
from billing.reports.params import ReportError, parse_currency, parse_period
from billing.reports.routes import (
    Caller,
    Currency,
    DbSession,
    Format,
    FromDate,
    ToDate,
    csv_response,
    file_name,
    period_of,
    wants_csv,
)
from billing.reports.routes import router as reports_router
from billing.settings import get_settings

router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=reports_router.responses)
Layout = Annotated[
    str, Query(description="journal (double entry), xero (precoded bank statement) or qbo.")
]


@router.get("/payouts", response_model=Payouts)
def payouts_report(
    request: Request, _caller: Caller, session: DbSession,
    from_: FromDate = None, to: ToDate = None, currency: Currency = None, format: Format = None,
) -> Any:  # fmt: skip
    """Payouts by arrival date: amount, the ledger's parts, any difference or unmatched line."""
    period = period_of(from_, to, currency, months=1)
    as_csv = wants_csv(request, format)
    report = service.payout_report(session, period=period)
    if as_csv:
        return csv_response(file_name("payouts", period), columns_of(PayoutRow), report.rows)
    return report


@router.get("/payouts/{stripe_payout_id}", response_model=PayoutDetail)
def payout_detail(caller: Caller, session: DbSession, stripe_payout_id: str) -> Any:
    """One payout, line by line, each balance transaction with the ledger row it matched."""
    return service.payout_detail(session, stripe_payout_id=stripe_payout_id, caller=caller)


def _layout(value: str) -> str:
    if value not in LAYOUTS:
        raise ReportError("layout must be journal, xero or qbo.", field="layout")
    return value


def _export(name: str, layout: str, chunks: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{layout}.csv"'},
    )


@router.get("/payouts/{stripe_payout_id}/export")
def payout_export(
    _caller: Caller, session: DbSession, stripe_payout_id: str, layout: Layout = "journal"
) -> StreamingResponse:
    """The payout's ledger lines and its transfer to the bank as CSV; 409 unless it ties out."""
    chosen = _layout(layout)
    _currency, lines = service.payout_journal(
        session, stripe_payout_id=stripe_payout_id, timezone=get_settings().reporting_timezone
    )
    return _export(stripe_payout_id, chosen, csv_export(lines, chosen, get_settings()))


@router.get("/journal")
def month_export(
    _caller: Caller,
    month: Annotated[str, Query(description="YYYY-MM, in the reporting time zone.")],
    layout: Layout = "journal", currency: Currency = None,
) -> StreamingResponse:  # fmt: skip
    """A month's gifts, fees, refunds and disputes as CSV, the revenue report's figures."""
    chosen = _layout(layout)
    code = parse_currency(currency)
    if chosen != "journal" and code is None:
        # A bank statement is of one account in one currency.
        raise ReportError("currency is required for the xero and qbo layouts.", field="currency")
    try:
        first = date.fromisoformat(month + "-01")
    except ValueError:
        raise ReportError("month must look like 2026-10.", field="month") from None
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    period = parse_period(
        first.isoformat(), last.isoformat(), code, get_settings().reporting_timezone, 1
    )
    name = f"journal-{month}" + (f"-{code}" if code else "")
    return _export(
        name, chosen, service.month_export(period=period, layout=chosen, settings=get_settings())
    )


@router.get("/drift", response_model=ReconcileRunView | None)
def last_drift_check(_caller: Caller, session: DbSession) -> Any:
    """The last drift check of the ledger against Stripe (`pledges reconcile`, nightly)."""
    return queries.last_reconcile_run(session)
