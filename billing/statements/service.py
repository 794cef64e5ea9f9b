"""Annual giving statements: what one holds, which years a reader has, queuing the yearly mail."""

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.i18n import Message
from billing.models import Reader
from billing.outbox import SEND_EMAIL_TASK
from billing.settings import Settings
from billing.statements import queries
from billing.statements.fiscal import (
    FiscalYear,
    fiscal_year,
    fiscal_year_containing,
    is_complete,
    parse_month_day,
)
from billing.task_queue import enqueue_after_commit

STATEMENT_TEMPLATE = "statement"
# Years a statement can be asked for; outside them dates stop making sense.
MIN_YEAR, MAX_YEAR = 1970, 9998


class StatementError(Exception):
    def __init__(self, message: str, status_code: int = 404) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def statement_key(reader_id: uuid.UUID, year: int) -> str:
    """The outbox key: one statement mail per reader and fiscal year, whatever reruns.

    queries.QUEUE_MAILS_SQL builds the same key in SQL.
    """
    return f"statement:{reader_id}:{year}"


def receipt_number(settings: Settings, payment_id: int) -> str:
    """The number printed on that payment's receipt (workers/mail_context.receipt_number)."""
    return f"{settings.receipt_number_prefix}-{payment_id:08d}"


@dataclass(frozen=True)
class StatementLine:
    kind: str  # gift | refund | dispute
    day: date
    receipt_number: str
    interval: str
    currency: str
    amount_minor: int
    status: str
    # A won dispute is shown but takes nothing off, as in the revenue report.
    counted: bool


@dataclass
class CurrencyTotals:
    currency: str
    payments: int = 0
    gross: int = 0
    refunded: int = 0
    disputed: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.refunded - self.disputed


@dataclass
class Statement:
    number: str
    fiscal: FiscalYear
    reader_name: str | None
    reader_email: str
    locale: str
    issued_on: date
    lines: list[StatementLine] = field(default_factory=list)
    totals: list[CurrencyTotals] = field(default_factory=list)


def fiscal_year_of(settings: Settings, year: int) -> FiscalYear:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise StatementError(Message("There are no statements for %(year)s.", year=year))
    return fiscal_year(year, settings.fiscal_year_start, settings.reporting_timezone)


def today(settings: Settings) -> date:
    return utcnow().astimezone(ZoneInfo(settings.reporting_timezone)).date()


def last_complete_year(settings: Settings) -> FiscalYear:
    current = fiscal_year_containing(
        today(settings), settings.fiscal_year_start, settings.reporting_timezone
    )
    return fiscal_year_of(settings, current.year - 1)


# A send day missed (beat down, setting turned on late) is caught up within this many days;
# after that a year's statements are sent only by `pledges statements send`.
CATCH_UP_DAYS = 31


def year_due_for_mailing(settings: Settings) -> int | None:
    """The fiscal year whose statements STATEMENTS_SEND_ON says go out now, if any.

    The send day is the first STATEMENTS_SEND_ON after that year ended.
    """
    if settings.statements_send_on is None:
        return None
    fiscal = last_complete_year(settings)
    month, day = parse_month_day(settings.statements_send_on)
    after_end = fiscal.last_day + timedelta(days=1)
    send_day = date(after_end.year, month, day)
    if send_day < after_end:
        send_day = date(after_end.year + 1, month, day)
    days_late = (today(settings) - send_day).days
    return fiscal.year if 0 <= days_late < CATCH_UP_DAYS else None


def statement_years(session: Session, settings: Settings, reader_id: uuid.UUID) -> list[FiscalYear]:
    """Finished fiscal years in which the reader gave (or got money back), newest first."""
    days = queries.reader_days(session, reader_id, settings.reporting_timezone)
    years = {
        fiscal_year_containing(day, settings.fiscal_year_start, settings.reporting_timezone)
        for day in days
    }
    now = today(settings)
    return sorted((fy for fy in years if is_complete(fy, now)), key=lambda fy: -fy.year)


def build_statement(
    session: Session, settings: Settings, *, reader: Reader, year: int
) -> Statement:
    """The reader's statement for a finished year; its number is given out on first use.

    The caller commits (a first statement writes its number).
    """
    fiscal = fiscal_year_of(settings, year)
    if not is_complete(fiscal, today(settings)):
        raise StatementError(
            Message("The fiscal year %(year)s is not over yet.", year=fiscal.label)
        )
    events = queries.reader_events(session, reader.id, fiscal)
    if not events:
        raise StatementError(Message("Nothing was given in %(year)s.", year=fiscal.label))
    queries.allocate_numbers(session, fiscal, settings.statement_number_prefix, reader.id)
    number = queries.statement_number(session, reader.id, year)
    assert number is not None  # allocated just above for a reader with events
    zone = ZoneInfo(settings.reporting_timezone)
    totals: dict[str, CurrencyTotals] = defaultdict(lambda: CurrencyTotals(""))
    lines = []
    for event in events:
        happened_at: datetime = event.happened_at
        counted = not (event.kind == "dispute" and event.status == "won")
        lines.append(
            StatementLine(
                kind=event.kind, day=happened_at.astimezone(zone).date(),
                receipt_number=receipt_number(settings, event.payment_id),
                interval=event.interval, currency=event.currency, amount_minor=event.amount,
                status=event.status, counted=counted,
            )
        )  # fmt: skip
        total = totals[event.currency]
        total.currency = event.currency
        if event.kind == "gift":
            total.payments += 1
            total.gross += event.amount
        elif event.kind == "refund":
            total.refunded += event.amount
        elif counted:
            total.disputed += event.amount
    return Statement(
        number=number,
        fiscal=fiscal,
        reader_name=reader.name,
        reader_email=reader.email,
        locale=reader.locale,
        issued_on=today(settings),
        lines=lines,
        totals=[totals[currency] for currency in sorted(totals)],
    )


@dataclass(frozen=True)
class QueueResult:
    queued: int
    already_queued: int


def queue_statements(session: Session, settings: Settings, *, year: int) -> QueueResult:
    """An outbox row per reader with a statement for `year`; rows queued before stay as they are.

    One INSERT … SELECT … ON CONFLICT DO NOTHING: a rerun, or a run racing another, adds only
    the missing rows. The caller commits; the sends go out after that commit.
    """
    fiscal = fiscal_year_of(settings, year)
    if not is_complete(fiscal, today(settings)):
        raise StatementError(
            Message("The fiscal year %(year)s is not over yet.", year=fiscal.label), 409
        )
    queries.allocate_numbers(session, fiscal, settings.statement_number_prefix)
    inserted, readers = queries.queue_statement_mails(
        session, fiscal, template=STATEMENT_TEMPLATE, key_prefix="statement"
    )
    for key in inserted:
        enqueue_after_commit(session, SEND_EMAIL_TASK, key)
    return QueueResult(queued=len(inserted), already_queued=readers - len(inserted))


def reader_of_statement_mail(session: Session, reader_id: str) -> Reader:
    reader = session.scalar(select(Reader).where(Reader.id == uuid.UUID(reader_id)))
    if reader is None:
        raise LookupError(f"reader {reader_id} is not in the ledger")
    return reader
