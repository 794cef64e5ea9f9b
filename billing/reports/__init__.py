"""Finance reports over the ledger: queries, API routes, CSV exports and the dashboard."""

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles


def install_reports(app: FastAPI) -> None:
    """Routes, the dashboard's static files and the reports' error shape, in one call."""
    from billing.cohorts.routes import router as cohorts_router
    from billing.payouts.routes import router as payouts_router
    from billing.reports.dashboard import STATIC_DIR
    from billing.reports.dashboard import router as dashboard_router
    from billing.reports.params import ReportError
    from billing.reports.routes import report_error_response
    from billing.reports.routes import router as reports_router

    app.include_router(reports_router)
    app.include_router(payouts_router)
    app.include_router(cohorts_router)
    app.include_router(dashboard_router)
    app.mount("/reports/static", StaticFiles(directory=STATIC_DIR), name="reports-static")

    @app.exception_handler(ReportError)
    async def _report_error(_request: Request, exc: ReportError) -> Response:
        return report_error_response(exc)
