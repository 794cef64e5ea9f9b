"""`GET /v1/reports/cohorts`: retention by cohort, as JSON or CSV."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from billing.cohorts import queries
from billing.cohorts.schemas import COHORT_DIMENSIONS, CohortRow, Cohorts
from billing.reports.csv_export import columns_of
from billing.reports.params import ReportError
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

router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=reports_router.responses)


@router.get("/cohorts", response_model=Cohorts)
def cohorts_report(
    request: Request, _caller: Caller, session: DbSession,
    from_: FromDate = None, to: ToDate = None, currency: Currency = None, format: Format = None,
    by: Annotated[str, Query(description="month, campaign, source or article.")] = "month",
) -> Any:  # fmt: skip
    """Supporters who started in the period: share still contributing 1…12 months on, churn
    (voluntary, failed payment), recovered, upgraded, 12-month revenue per supporter."""
    if by not in COHORT_DIMENSIONS:
        raise ReportError("by must be month, campaign, source or article.", field="by")
    period = period_of(from_, to, currency, months=12)
    as_csv = wants_csv(request, format)
    report = queries.cohorts(session, period=period, by=by)
    if as_csv:
        return csv_response(file_name(f"cohorts-by-{by}", period), columns_of(CohortRow),
                            report.rows)  # fmt: skip
    return report
