"""Statements over HTTP: a reader's download from the manage link, finance's per-reader totals."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from billing.dependencies import get_session
from billing.i18n import Message, request_language, translate
from billing.manage import service as manage_service
from billing.manage.pages import PAGE_HEADERS
from billing.reader_links import pledge_id_from_token
from billing.reports.auth import Principal, report_reader
from billing.reports.csv_export import columns_of
from billing.reports.params import ReportError, parse_currency
from billing.reports.routes import ERROR_SHAPE, Format, csv_response, wants_csv
from billing.settings import Settings, get_settings
from billing.statements import render, service
from billing.statements.report import statements_report
from billing.statements.schemas import StatementReport, StatementRow

manage_router = APIRouter(prefix="/manage", include_in_schema=False)
reports_router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    responses={
        401: {"description": "No API key, or one that is unknown or revoked."} | ERROR_SHAPE,
        403: {"description": "Only admin keys see statements."} | ERROR_SHAPE,
        422: {"description": "A parameter the report cannot use."} | ERROR_SHAPE,
    },
)

DbSession = Annotated[Session, Depends(get_session)]
AppSettings = Annotated[Settings, Depends(get_settings)]
INVALID_LINK = Message("This link is not valid or has expired.")


def _statement_for(
    request: Request, session: Session, settings: Settings, token: str, year: int
) -> service.Statement | Response:
    """The same checks as the manage page: a valid, unexpired token of a reader not erased."""
    pledge_id = pledge_id_from_token(token)
    found = None if pledge_id is None else manage_service.find(session, pledge_id)
    if found is None:
        return JSONResponse(
            {"message": translate(INVALID_LINK, request_language(request)), "detail": []},
            status_code=404, headers=PAGE_HEADERS,
        )  # fmt: skip
    try:
        statement = service.build_statement(session, settings, reader=found[1], year=year)
    except service.StatementError as error:
        return JSONResponse(
            {"message": translate(error.message, found[1].locale), "detail": []},
            status_code=error.status_code, headers=PAGE_HEADERS,
        )  # fmt: skip
    # Its number was given out on first use and must stay the same on every later download.
    session.commit()
    return statement


@manage_router.get("/{token}/statements/{year}.pdf", response_model=None)
def statement_pdf(
    request: Request, token: str, year: int, session: DbSession, settings: AppSettings
) -> Response:
    statement = _statement_for(request, session, settings, token, year)
    if isinstance(statement, Response):
        return statement
    return Response(
        render.render_pdf(statement, settings),
        media_type="application/pdf",
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="{render.file_name(statement, "pdf")}"',
        },
    )


@manage_router.get("/{token}/statements/{year}.html", response_class=HTMLResponse)
def statement_html(
    request: Request, token: str, year: int, session: DbSession, settings: AppSettings
) -> Response:
    statement = _statement_for(request, session, settings, token, year)
    if isinstance(statement, Response):
        return statement
    return HTMLResponse(render.render_html(statement, settings), headers=PAGE_HEADERS)


def admin_reader(caller: Annotated[Principal, Depends(report_reader)]) -> Principal:
    """Statements name readers one by one, so only admin keys read them (403 for finance)."""
    if not caller.sees_personal_data:
        raise ReportError("Giving statements list readers by name: an admin key is needed.", 403)
    return caller


@reports_router.get("/statements", response_model=StatementReport)
def statements_list(
    request: Request,
    _caller: Annotated[Principal, Depends(admin_reader)],
    session: DbSession,
    settings: AppSettings,
    year: Annotated[int, Query(description="Fiscal year (FISCAL_YEAR_START, default 01-01).")],
    currency: Annotated[str | None, Query(description="Only this currency.")] = None,
    format: Format = None,
) -> Any:
    """One row per reader and currency: gross, refunded, disputed and net for a fiscal year."""
    as_csv = wants_csv(request, format)
    report = statements_report(session, settings, year=year, currency=parse_currency(currency))
    session.commit()
    if as_csv:
        name = f"statements-{report.fiscal_year}"
        return csv_response(name, columns_of(StatementRow), report.rows)
    return report
