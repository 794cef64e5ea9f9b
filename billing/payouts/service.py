"""Payout reports and exports: keyword-only functions over a session; callers commit."""

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from billing.db import get_sessionmaker
from billing.payouts import queries
from billing.payouts.exports import JournalLine, csv_export
from billing.payouts.schemas import PayoutDetail, PayoutLine, PayoutLineWithReader, Payouts
from billing.reports.auth import Principal
from billing.reports.params import Period, ReportError
from billing.settings import Settings

EVERY_DAY = (date(1, 1, 1), date(9999, 12, 31))


def payout_report(session: Session, *, period: Period) -> Payouts:
    rows, issues = queries.payouts(
        session, from_date=period.from_date, to_date=period.to_date, currency=period.currency
    )
    return Payouts(
        from_date=period.from_date, to_date=period.to_date, timezone=period.timezone,
        currency=period.currency, rows=rows, issues=issues,
    )  # fmt: skip


def payout_detail(session: Session, *, stripe_payout_id: str, caller: Principal) -> PayoutDetail:
    rows, issues = queries.payouts(
        session, from_date=EVERY_DAY[0], to_date=EVERY_DAY[1], currency=None,
        stripe_payout_id=stripe_payout_id,
    )  # fmt: skip
    if not rows:
        raise ReportError(f"No payout {stripe_payout_id} in the ledger.", status_code=404)
    lines = queries.payout_lines(session, stripe_payout_id=stripe_payout_id)
    shaped: list[PayoutLineWithReader] | list[PayoutLine]
    if caller.sees_personal_data:
        shaped = [PayoutLineWithReader.model_validate(line) for line in lines]
    else:
        shaped = [PayoutLine.model_validate(line) for line in lines]
    return PayoutDetail(payout=rows[0], issues=issues, lines=shaped)


def _local_date(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()


def payout_journal(
    session: Session, *, stripe_payout_id: str, timezone: str
) -> tuple[str, list[JournalLine]]:
    """The payout's ledger lines and the transfer to the bank; refused unless it ties out,
    so an export never books a difference nobody has explained."""
    rows, issues = queries.payouts(
        session, from_date=EVERY_DAY[0], to_date=EVERY_DAY[1], currency=None,
        stripe_payout_id=stripe_payout_id,
    )  # fmt: skip
    if not rows:
        raise ReportError(f"No payout {stripe_payout_id} in the ledger.", status_code=404)
    payout = rows[0]
    if not payout.ties_out:
        reasons = "; ".join(issue.reason for issue in issues)
        raise ReportError(
            f"Payout {stripe_payout_id} does not tie out ({reasons}); see "
            f"/v1/reports/payouts/{stripe_payout_id}. It is not exported until it does.",
            status_code=409,
        )
    lines: list[JournalLine] = []
    for line in queries.payout_lines(session, stripe_payout_id=stripe_payout_id):
        lines += _journal_lines_of(line, payout.currency, timezone)
    lines.append(
        JournalLine("payout", payout.arrival_date, payout.amount, payout.currency, stripe_payout_id)
    )
    return payout.currency, lines


def _journal_lines_of(line: dict[str, Any], currency: str, timezone: str) -> list[JournalLine]:
    on, reference = _local_date(line["created_at"], timezone), str(line["source_id"] or "")
    kind, amount, fee = line["matched"], int(line["ledger_amount"] or 0), int(line["fee"] or 0)
    found: list[JournalLine] = []
    if kind == "payment":
        found.append(JournalLine("gift", on, amount, currency, reference))
    elif kind == "refund":
        found.append(JournalLine("refund", on, -amount, currency, reference))
    elif kind == "dispute":
        lost = amount < 0
        found.append(
            JournalLine("dispute" if lost else "dispute_reversal", on, abs(amount), currency,
                        reference)
        )  # fmt: skip
    elif kind == "fee":
        found.append(JournalLine("fee" if amount < 0 else "fee_refund", on, abs(amount),
                                 currency, line["stripe_balance_transaction_id"]))  # fmt: skip
    if kind in ("payment", "refund", "dispute") and fee:
        found.append(JournalLine("fee" if fee > 0 else "fee_refund", on, abs(fee), currency,
                                 reference))  # fmt: skip
    return found


def month_export(*, period: Period, layout: str, settings: Settings) -> Iterator[str]:
    """The month's lines exactly as the revenue report counts them, as CSV, on a session of its
    own held while a download streams."""
    yield "".join(csv_export((), layout, settings))  # the header alone
    with get_sessionmaker()() as session:
        yield from queries.month_csv(session, period=period, layout=layout, settings=settings)


def month_close(session: Session, *, period: Period) -> dict[str, Any]:
    """What the dashboard shows for closing a month: its payouts and the last drift check."""
    rows, issues = queries.payouts(
        session, from_date=period.from_date, to_date=period.to_date, currency=period.currency
    )
    return {"payouts": rows, "payout_issues": issues, "drift": queries.last_reconcile_run(session)}
