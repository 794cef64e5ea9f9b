"""The finance dashboard page: signed in with an API key, figures rendered on the server."""

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from billing.cohorts import queries as cohort_queries
from billing.dependencies import get_session
from billing.endpoints.service import overview as endpoint_overview
from billing.money import format_money
from billing.payouts import service as payout_service
from billing.reports import failures, queries
from billing.reports.auth import DASHBOARD_COOKIE, authenticate, presented_key
from billing.reports.params import ReportError, parse_currency, parse_period, today_in
from billing.settings import get_settings

router = APIRouter(prefix="/reports", include_in_schema=False)
STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
TEMPLATES.filters["money"] = lambda minor, currency: format_money(int(minor), currency)
# A retention share "0.6667" as one of eleven colour steps of the heat-map (CSS classes, as the
# page's Content Security Policy allows no inline styles).
TEMPLATES.filters["heat"] = lambda share: f"heat-{round(float(share) * 10)}" if share else ""
# Everything the page loads comes from this app: no CDN, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
COOKIE_MAX_AGE = 8 * 3600
# The dashboard shows the latest failed payments; the full list is the CSV download.
DASHBOARD_FAILURES = 20


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _month_bounds(month: str | None, today: date) -> tuple[date, date]:
    """The month asked for as YYYY-MM, or the last complete one: the month finance closes."""
    if month:
        try:
            first = date.fromisoformat(month + "-01")
        except ValueError:
            raise ReportError("month must look like 2026-10.", field="month") from None
    else:
        first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return first, last


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    month: str | None = None,
    currency: str | None = None,
) -> Response:
    try:
        principal = authenticate(presented_key(request))
    except ReportError:
        return _page("sign_in.html", error=None)
    timezone = get_settings().reporting_timezone
    try:
        code = parse_currency(currency)
        first, last = _month_bounds(month, today_in(timezone))
    except ReportError as error:
        return _page("error.html", status_code=422, error=error.message)
    chosen = parse_period(first.isoformat(), last.isoformat(), code, timezone, 1)
    year = parse_period(None, last.isoformat(), code, timezone, 12)
    movement = queries.movement(session, year)
    revenue = queries.revenue(session, year, "month")
    recovery = queries.recovery(session, year)
    attribution = queries.attribution(session, year, top=10)
    chart_data = {
        "months": sorted({row.period.isoformat() for row in movement.rows}
                         | {row.period.isoformat() for row in revenue.rows}),
        "mrr": [{"period": r.period.isoformat(), "currency": r.currency, "amount": r.mrr_end}
                for r in movement.rows],
        "net": [{"period": r.period.isoformat(), "currency": r.currency, "amount": r.net}
                for r in revenue.rows],
        "recovery": [{"currency": r.currency, "failed": r.failed, "recovered": r.recovered,
                      "lost": r.lost, "still_retrying": r.still_retrying}
                     for r in recovery.totals],
    }  # fmt: skip
    latest_failures = failures.failure_page(
        session,
        failures.FailureFilters(
            from_value=year.from_date.isoformat(), to_value=year.to_date.isoformat(),
            currency=code, outcome=None, timezone=timezone,
        ),
        principal, cursor=None, limit=DASHBOARD_FAILURES,
    ).items  # fmt: skip
    # Payouts of the month and the last drift check (issue 13).
    extras = payout_service.month_close(session, period=chosen)
    csv_query = {"from": year.from_date, "to": year.to_date, "format": "csv"}
    return _page(
        "dashboard.html",
        role=principal.role,
        currency=code,
        month=first.strftime("%Y-%m"),
        summary=queries.summary(session, chosen),
        month_revenue=[row for row in revenue.rows if row.period == first],
        month_movement=[row for row in movement.rows if row.period == first],
        year=year,
        recovery=recovery.totals,
        failures=latest_failures,
        sees_email=principal.sees_personal_data,
        campaigns=[row for row in attribution.rows if row.dimension == "campaign"],
        chart_data=chart_data,
        csv_query=urlencode(csv_query | ({"currency": code} if code else {})),
        # Outgoing webhooks are an admin's business (billing/endpoints).
        endpoints=endpoint_overview(session) if principal.role == "admin" else None,
        **extras,
    )


@router.get("/dashboard/cohorts", response_class=HTMLResponse)
def cohorts_page(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    currency: str | None = None,
) -> Response:
    """The retention heat-map on a page of its own: it reads every payment of a year's
    supporters, too slow at scale to hold up the month's figures."""
    try:
        principal = authenticate(presented_key(request))
    except ReportError:
        return _page("sign_in.html", error=None)
    timezone = get_settings().reporting_timezone
    try:
        code = parse_currency(currency)
    except ReportError as error:
        return _page("error.html", status_code=422, error=error.message)
    year = parse_period(None, None, code, timezone, 12)
    report = cohort_queries.cohorts(session, period=year, by="month")
    return _page("cohorts.html", role=principal.role, currency=code, year=year,
                 cohorts=report.rows)  # fmt: skip


@router.post("/dashboard/session")
async def sign_in(request: Request) -> Response:
    """Trade an API key for an HTTP-only cookie holding it, so CSV links work from the page."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("api_key") or [""])[0].strip()
    try:
        authenticate(key)
    except ReportError as error:
        return _page("sign_in.html", status_code=401, error=error.message)
    response = RedirectResponse("/reports/dashboard", status_code=303)
    response.set_cookie(
        DASHBOARD_COOKIE,
        key,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=get_settings().public_url.startswith("https://"),
        path="/",
    )
    return response


@router.post("/dashboard/sign-out")
def sign_out() -> Response:
    response = RedirectResponse("/reports/dashboard", status_code=303)
    response.delete_cookie(DASHBOARD_COOKIE, path="/")
    return response
