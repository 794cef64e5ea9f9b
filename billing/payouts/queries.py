"""Every payout query: balance transactions matched to the ledger by Stripe id when read.

Matching at read time means a payment, refund or dispute recorded after its payout was loaded is
matched without a re-run. A line ties out when the ledger row exists and holds the same amount
and fee as Stripe's transaction; a payout ties out when every line does and the ledger's figures
add up to the amount that reached the bank.
"""

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from billing.models import ReconcileRun
from billing.payouts.exports import SQL_DAY_FORMATS, booking_table, sql_rows
from billing.payouts.schemas import PayoutIssue, PayoutLine, PayoutRow, ReconcileRunView
from billing.reports.csv_export import SQL_CELL_PARAMS, SQL_CSV_FIELD, cell
from billing.reports.params import Period
from billing.settings import Settings

# Each balance transaction with what the ledger says about its source. Stripe's reporting
# categories say where to look, so each line probes one table by a unique index.
LINES_SQL = """
SELECT t.payout_id, t.stripe_balance_transaction_id, t.type, t.reporting_category, t.source_id,
       t.amount_minor AS amount, t.fee_minor AS fee, t.net_minor AS net,
       t.stripe_created_at AS created_at,
       CASE WHEN t.type = 'payout' THEN 'payout'
            WHEN pay.id IS NOT NULL THEN 'payment'
            WHEN r.id IS NOT NULL THEN 'refund'
            WHEN d.id IS NOT NULL THEN 'dispute'
            WHEN t.reporting_category = 'fee' THEN 'fee'
       END AS matched,
       CASE WHEN pay.id IS NOT NULL THEN pay.amount_minor
            WHEN r.id IS NOT NULL THEN -r.amount_minor
            -- a dispute takes the money (negative); a won one's reversal gives it back
            WHEN d.id IS NOT NULL THEN sign(t.amount_minor)::bigint * d.amount_minor
            WHEN t.reporting_category = 'fee' THEN t.amount_minor
       END AS ledger_amount,
       CASE WHEN pay.id IS NOT NULL THEN pay.fee_minor
            -- refund, dispute and fee lines carry Stripe's fee, which the ledger does not hold
            WHEN r.id IS NOT NULL OR d.id IS NOT NULL OR t.reporting_category = 'fee'
                THEN t.fee_minor
       END AS ledger_fee,
       pay.id AS payment_id, r.id AS refund_id, d.id AS dispute_id, pay.pledge_id
  FROM payout_transactions t
  LEFT JOIN payments pay
    ON t.reporting_category = 'charge' AND pay.stripe_charge_id = t.source_id
  LEFT JOIN refunds r
    ON t.reporting_category = 'refund' AND r.stripe_refund_id = t.source_id
  LEFT JOIN disputes d
    ON t.reporting_category IN ('dispute', 'dispute_reversal')
   AND d.stripe_dispute_id = t.source_id
"""

# Never NULL: a line with no match is a line that does not tie out.
TIES_OUT = """coalesce(matched = 'payout' OR (matched IS NOT NULL AND ledger_amount = amount
                                           AND ledger_fee IS NOT DISTINCT FROM fee), false)"""

PAYOUTS_SQL = """
WITH chosen AS (
    SELECT id, stripe_payout_id, status, arrival_date, currency, amount_minor,
           transactions_loaded_at, failure_code
      FROM payouts
     WHERE arrival_date >= :from_date AND arrival_date <= :to_date {currency} {payout}
), lines AS (
    SELECT lines.*, {ties_out} AS ties_out
      -- ANY(ARRAY(…)): the ids first, then the index on payout_id, never a scan of every line
      FROM ({lines} WHERE t.payout_id = ANY(ARRAY(SELECT id FROM chosen))) AS lines
), per_payout AS (
    SELECT payout_id,
           count(*) FILTER (WHERE matched IS DISTINCT FROM 'payout') AS transactions,
           coalesce(sum(ledger_amount) FILTER (WHERE matched = 'payment' AND ties_out), 0)
               AS gifts,
           coalesce(sum(ledger_fee) FILTER (WHERE matched IN ('payment', 'refund', 'dispute')
                                              AND ties_out), 0)
           - coalesce(sum(ledger_amount) FILTER (WHERE matched = 'fee' AND ties_out), 0)
               AS fees,
           -coalesce(sum(ledger_amount) FILTER (WHERE matched = 'refund' AND ties_out), 0)
               AS refunds,
           -coalesce(sum(ledger_amount) FILTER (WHERE matched = 'dispute' AND ties_out), 0)
               AS disputes,
           count(*) FILTER (WHERE NOT ties_out) AS unmatched_transactions,
           coalesce(sum(net) FILTER (WHERE NOT ties_out), 0) AS unmatched_net,
           coalesce(json_agg(json_build_object(
               'stripe_balance_transaction_id', stripe_balance_transaction_id, 'type', type,
               'source_id', source_id, 'amount', amount, 'net', net, 'matched', matched,
               'ledger_amount', ledger_amount, 'ledger_fee', ledger_fee, 'fee', fee)
               ORDER BY stripe_balance_transaction_id) FILTER (WHERE NOT ties_out), '[]')
               AS problems
      FROM lines
     GROUP BY payout_id
)
SELECT chosen.stripe_payout_id, chosen.status, chosen.arrival_date, chosen.currency,
       chosen.amount_minor AS amount, chosen.transactions_loaded_at, chosen.failure_code,
       coalesce(transactions, 0) AS transactions, coalesce(gifts, 0)::bigint AS gifts,
       coalesce(fees, 0)::bigint AS fees, coalesce(refunds, 0)::bigint AS refunds,
       coalesce(disputes, 0)::bigint AS disputes,
       coalesce(unmatched_transactions, 0) AS unmatched_transactions,
       coalesce(unmatched_net, 0)::bigint AS unmatched_net, coalesce(problems, '[]') AS problems
  FROM chosen LEFT JOIN per_payout ON per_payout.payout_id = chosen.id
 ORDER BY chosen.arrival_date, chosen.currency, chosen.stripe_payout_id
"""


def _rows(session: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    # As the other reports: JIT costs more than it saves on index-range queries.
    session.execute(text("SET LOCAL jit = off"))
    return [dict(row) for row in session.execute(text(sql), params).mappings()]


def _line_reason(line: dict[str, Any]) -> str:
    if line["matched"] is None:
        return f"{line['type']} {line['source_id'] or ''}: not in the ledger".replace("  ", " ")
    if line["ledger_amount"] != line["amount"]:
        return f"the ledger holds {line['ledger_amount']}, Stripe moved {line['amount']}"
    return f"the ledger's fee is {line['ledger_fee']}, Stripe's is {line['fee']}"


def payouts(
    session: Session, *, from_date: date, to_date: date, currency: str | None,
    stripe_payout_id: str | None = None,
) -> tuple[list[PayoutRow], list[PayoutIssue]]:  # fmt: skip
    """Payouts arriving between the dates (inclusive), each with its parts and what is wrong."""
    sql = PAYOUTS_SQL.format(
        currency="AND currency = :currency" if currency else "",
        payout="AND stripe_payout_id = :payout" if stripe_payout_id else "",
        lines=LINES_SQL,
        ties_out=TIES_OUT,
    )
    params = {
        "from_date": from_date,
        "to_date": to_date,
        "currency": currency,
        "payout": stripe_payout_id,
    }
    rows: list[PayoutRow] = []
    issues: list[PayoutIssue] = []
    for found in _rows(session, sql, params):
        payout_id = found["stripe_payout_id"]
        sum_of_parts = found["gifts"] - found["fees"] - found["refunds"] - found["disputes"]
        difference = found["amount"] - sum_of_parts
        problems: list[str] = []
        if found["status"] in ("failed", "canceled"):
            problems.append(f"payout {found['status']} ({found['failure_code'] or 'no code'})")
        elif found["transactions_loaded_at"] is None:
            problems.append("Stripe's list of its balance transactions has not been read")
        for line in found["problems"]:
            issue = PayoutIssue(
                stripe_payout_id=payout_id,
                stripe_balance_transaction_id=line["stripe_balance_transaction_id"],
                type=line["type"], source_id=line["source_id"], amount=line["amount"],
                net=line["net"], reason=_line_reason(line),
            )  # fmt: skip
            issues.append(issue)
        if difference != found["unmatched_net"]:
            # Every line Stripe listed is accounted for, yet the payout is more or less:
            # a transaction is missing from the list we hold.
            problems.append(
                f"the ledger's parts add up to {sum_of_parts}, {difference} short of the payout"
                f"{' after the unmatched lines' if found['unmatched_net'] else ''}"
            )
        for reason in problems:
            issue = PayoutIssue(
                stripe_payout_id=payout_id, stripe_balance_transaction_id=None, type=None,
                source_id=None, amount=found["amount"], net=difference, reason=reason,
            )  # fmt: skip
            issues.append(issue)
        row = PayoutRow(
            stripe_payout_id=payout_id, status=found["status"],
            arrival_date=found["arrival_date"], currency=found["currency"],
            amount=found["amount"], transactions=found["transactions"],
            gifts=found["gifts"], fees=found["fees"], refunds=found["refunds"],
            disputes=found["disputes"], sum_of_parts=sum_of_parts, difference=difference,
            unmatched_transactions=found["unmatched_transactions"],
            unmatched_net=found["unmatched_net"],
            ties_out=difference == 0 and not problems and not found["problems"],
        )  # fmt: skip
        rows.append(row)
    return rows, issues


PAYOUT_LINES_SQL = """
SELECT lines.*, {ties_out} AS ties_out,
       CASE WHEN readers.erased_at IS NULL THEN readers.email END AS reader_email
  FROM ({lines} WHERE t.payout_id = (SELECT id FROM payouts WHERE stripe_payout_id = :payout))
       AS lines
  LEFT JOIN pledges ON pledges.id = lines.pledge_id
  LEFT JOIN readers ON readers.id = pledges.reader_id
 ORDER BY lines.created_at, lines.stripe_balance_transaction_id
"""


def payout_lines(session: Session, *, stripe_payout_id: str) -> list[dict[str, Any]]:
    """Every balance transaction of one payout with the ledger row it matched (if any)."""
    sql = PAYOUT_LINES_SQL.format(lines=LINES_SQL, ties_out=TIES_OUT)
    return _rows(session, sql, {"payout": stripe_payout_id})


def line_models(lines: list[dict[str, Any]]) -> Iterator[PayoutLine]:
    for line in lines:
        yield PayoutLine.model_validate(line)


# Ledger lines of a month as the revenue report counts them: payments by paid_at, refunds by
# refunded_at (not failed or cancelled), disputes by opened_at unless won. A payment's gift and
# its fee are one entry, a line and its fee line; in MONTH_LINES_ORDER.
MONTH_LINES_SQL = """
-- From the index alone (ix_payments_revenue).
SELECT 'gift' AS kind, paid_at AS at, currency, amount_minor AS amount, fee_minor AS fee,
       coalesce(stripe_charge_id, stripe_payment_intent_id, stripe_invoice_id) AS reference
  FROM payments
 WHERE paid_at >= :start_at AND paid_at < :end_at AND status IN ('paid', 'refunded') {currency}
UNION ALL
SELECT 'refund', refunded_at, currency, amount_minor, NULL, stripe_refund_id
  FROM refunds
 WHERE refunded_at >= :start_at AND refunded_at < :end_at
   AND status NOT IN ('failed', 'canceled') {currency}
UNION ALL
SELECT 'dispute', opened_at, currency, amount_minor, NULL, stripe_dispute_id
  FROM disputes
 WHERE opened_at >= :start_at AND opened_at < :end_at AND status <> 'won' {currency}
"""
MONTH_LINES_ORDER = "ORDER BY at, reference"

# Each entry's rows in a layout, written by PostgreSQL (exports.sql_rows). An entry in a currency
# with no known exponent gets none, and the export stops there rather than leave it out.
MONTH_CSV_SQL = """
WITH booked AS (
    SELECT b.kind, b.currency, upper(b.currency) AS code, b.exponent, b.scale, b.money_in,
           {other} AS other, {description} AS description, b.description AS description_cell,
           CASE WHEN b.money_in THEN {balance} ELSE {other} END AS debit,
           CASE WHEN b.money_in THEN {other} ELSE {balance} END AS credit
      FROM jsonb_to_recordset(CAST(:bookings AS jsonb))
           AS b (kind text, currency text, exponent int, scale bigint, money_in boolean,
                 other text, description text)
)
SELECT CASE WHEN b.kind IS NOT NULL THEN {rows} END AS csv, l.currency
  FROM ({lines}) AS l
  LEFT JOIN booked b USING (kind, currency)
  LEFT JOIN booked f ON f.kind = 'fee' AND f.currency = l.currency
 {order}
"""


def month_csv(
    session: Session, *, period: Period, layout: str, settings: Settings
) -> Iterator[str]:
    """The month's ledger lines as the layout's CSV rows, streamed in chunks (no header)."""
    sql = MONTH_CSV_SQL.format(
        other=SQL_CSV_FIELD.format("b.other"),
        description=SQL_CSV_FIELD.format("b.description"),
        balance=SQL_CSV_FIELD.format("CAST(:balance AS text)"),
        rows=sql_rows(layout),
        lines=MONTH_LINES_SQL.format(
            currency="AND currency = :currency" if period.currency else ""
        ),
        order=MONTH_LINES_ORDER,
    )
    params = {
        "currency": period.currency, "tz": period.timezone, "day_format": SQL_DAY_FORMATS[layout],
        "bookings": booking_table(settings), "balance": cell(settings.account_stripe_balance),
        **SQL_CELL_PARAMS,
    }  # fmt: skip
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))  # each worker sorts its rows in memory
    # A query per week, each read whole: a server-side cursor would stream one query but run it
    # on one core, and a download holds a week's lines at most.
    start_at = period.start_at
    while start_at < period.end_at:
        end_at = min(start_at + timedelta(days=7), period.end_at)
        rows = session.execute(text(sql), params | {"start_at": start_at, "end_at": end_at}).all()
        for row in rows:
            if row.csv is None:
                raise ValueError(f"No exponent is known for the currency {row.currency!r}.")
        yield "".join(row.csv for row in rows)
        start_at = end_at


def last_reconcile_run(session: Session) -> ReconcileRunView | None:
    run = session.scalars(
        select(ReconcileRun).order_by(ReconcileRun.started_at.desc()).limit(1)
    ).first()
    if run is None:
        return None
    return ReconcileRunView(
        id=run.id, started_at=run.started_at, finished_at=run.finished_at, days=run.days,
        checked=run.checked, missing=run.missing, replayed=run.replayed,
        unexplained=[str(item) for item in run.unexplained], status=run.status, error=run.error,
    )  # fmt: skip
