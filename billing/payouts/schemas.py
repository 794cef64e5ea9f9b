"""Shapes of the payout report, its lines, drift-check runs and journal lines."""

from datetime import date, datetime

from pydantic import BaseModel

from billing.reports.schemas import ReportPeriod

# Amounts are integer minor units in the payout's currency.


class PayoutRow(BaseModel):
    stripe_payout_id: str
    status: str
    arrival_date: date
    currency: str
    amount: int
    transactions: int
    gifts: int
    fees: int
    refunds: int
    disputes: int
    sum_of_parts: int
    difference: int
    unmatched_transactions: int
    unmatched_net: int
    ties_out: bool


class PayoutIssue(BaseModel):
    """Why a payout does not tie out: a line the ledger cannot explain, or the payout itself."""

    stripe_payout_id: str
    stripe_balance_transaction_id: str | None
    type: str | None
    source_id: str | None
    amount: int
    net: int
    reason: str


class Payouts(ReportPeriod):
    rows: list[PayoutRow]
    issues: list[PayoutIssue]


class PayoutLine(BaseModel):
    stripe_balance_transaction_id: str
    type: str
    reporting_category: str
    source_id: str | None
    amount: int
    fee: int
    net: int
    # payment | refund | dispute | fee | payout, or null when nothing in the ledger matches.
    matched: str | None
    ledger_amount: int | None
    ledger_fee: int | None
    payment_id: int | None
    refund_id: int | None
    dispute_id: int | None
    ties_out: bool


class PayoutLineWithReader(PayoutLine):
    reader_email: str | None


class PayoutDetail(BaseModel):
    payout: PayoutRow
    issues: list[PayoutIssue]
    lines: list[PayoutLineWithReader] | list[PayoutLine]


class ReconcileRunView(BaseModel):
    id: int
    started_at: datetime
    finished_at: datetime | None
    days: int
    checked: int
    missing: int
    replayed: int
    unexplained: list[str]
    status: str
    error: str | None
