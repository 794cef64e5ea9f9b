"""Every report's SQL, in one place: aggregates run in PostgreSQL, Python only shapes the answer.

Definitions finance can rely on (also in the README):
- Revenue is a payment with `paid_at` whose status is `paid` or `refunded` (a refund is subtracted
  in the month it happened, it does not erase the payment), bucketed by `paid_at`; read from
  `revenue_rollup`, which a trigger on payments keeps (migration 0004_reports).
- Refunded: refunds that did not fail or get cancelled, by `refunded_at`. Disputed: disputes by
  `opened_at` unless won. Fees: Stripe's fee where it has settled; `fees_unknown_payments` counts
  payments whose fee is not known yet, so `net` is final only when that is 0.
- MRR: active and past-due recurring pledges; amount plus fee cover; annual pledges count 1/12
  (per pledge, rounded half up to a minor unit); one-time gifts never count.
"""

import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, and_, case, or_, select, text, tuple_
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import Payment, Pledge, Reader
from billing.reports.params import Period
from billing.reports.schemas import (
    Attribution,
    AttributionRow,
    Movement,
    MovementRow,
    Recovery,
    RecoveryRow,
    Revenue,
    RevenueRow,
    Summary,
    SummaryCurrencyRow,
)

# A reader who asked to be forgotten keeps their financial rows, but no longer their name.
READER_EMAIL = case((Reader.erased_at.is_(None), Reader.email), else_=None).label("reader_email")
READER_NAME = case((Reader.erased_at.is_(None), Reader.name), else_=None).label("reader_name")
PledgeRows = Select[Pledge, str | None, str | None]
PaymentRows = Select[Payment, str | None]
MRR = "pledge_mrr_minor(status, interval, amount_minor + fee_cover_minor)"


def _currency_filter(period: Period, column: str = "currency") -> str:
    # A fixed fragment, so the planner sees a plain equality (never user text in SQL).
    return f"AND {column} = :currency" if period.currency else ""


def _params(period: Period, **extra: Any) -> dict[str, Any]:
    return {
        "start_at": period.start_at,
        "end_at": period.end_at,
        "tz": period.timezone,
        "currency": period.currency,
        **extra,
    }


def _rate(numerator: int, denominator: int) -> str | None:
    """A ratio as a decimal string with four places, rounded half up; no floats near money."""
    if denominator == 0:
        return None
    return str(
        (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
    )


def _rows(session: Session, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    # JIT compiling costs PostgreSQL 200-500 ms per report, far more than it saves on queries
    # that read an index range; measured with benchmarks/reports_benchmark.py.
    session.execute(text("SET LOCAL jit = off"))
    # Enough for a year of failed payments to group in memory instead of sorting on disk.
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    return [dict(row) for row in session.execute(text(sql), params).mappings()]


SUMMARY_STATE_SQL = """
SELECT currency,
       sum(active)::bigint AS active_pledges,
       sum(past_due)::bigint AS past_due_pledges,
       sum(contributing)::bigint AS contributing_pledges,
       sum(mrr)::bigint AS mrr,
       sum(at_risk)::bigint AS amount_at_risk,
       sum(contributing_at_start)::bigint AS contributing_at_start
FROM (
    -- The ledger now...
    SELECT currency,
           count(*) FILTER (WHERE status = 'active') AS active,
           count(*) FILTER (WHERE status = 'past_due') AS past_due,
           count(*) AS contributing,
           sum({mrr}) AS mrr,
           coalesce(sum({mrr}) FILTER (WHERE status = 'past_due'), 0) AS at_risk,
           count(*) AS contributing_at_start
      FROM pledges
     WHERE status IN ('active', 'past_due') AND interval <> 'once' {currency}
     GROUP BY currency
    UNION ALL
    -- ...less every change made after the period ended gives the ledger as it was at its end
    -- (each history row moves one pledge from previous_status to status).
    SELECT currency,
           -(count(*) FILTER (WHERE status = 'active')
             - count(*) FILTER (WHERE previous_status = 'active')),
           -(count(*) FILTER (WHERE status = 'past_due')
             - count(*) FILTER (WHERE previous_status = 'past_due')),
           -(count(*) FILTER (WHERE mrr_minor > 0)
             - count(*) FILTER (WHERE mrr_minor - mrr_delta_minor > 0)),
           -sum(mrr_delta_minor),
           -(coalesce(sum(mrr_minor) FILTER (WHERE status = 'past_due'), 0)
             - coalesce(sum(mrr_minor - mrr_delta_minor)
                        FILTER (WHERE previous_status = 'past_due'), 0)),
           0
      FROM pledge_history
     WHERE changed_at >= :end_at AND interval <> 'once' {currency}
     GROUP BY currency
    UNION ALL
    SELECT currency, 0, 0, 0, 0, 0,
           -(count(*) FILTER (WHERE mrr_minor > 0)
             - count(*) FILTER (WHERE mrr_minor - mrr_delta_minor > 0))
      FROM pledge_history
     WHERE changed_at >= :start_at AND interval <> 'once' {currency}
     GROUP BY currency
) AS state
GROUP BY currency
HAVING sum(contributing) <> 0 OR sum(contributing_at_start) <> 0
ORDER BY currency
"""

SUMMARY_FLOW_SQL = """
SELECT
    (SELECT count(*) FROM pledges
      WHERE activated_at >= :start_at AND activated_at < :end_at
        AND interval <> 'once' {currency}) AS new_pledges,
    (SELECT count(*) FROM pledges
      WHERE activated_at >= :start_at AND activated_at < :end_at
        AND interval = 'once' {currency}) AS new_one_time_gifts,
    (SELECT count(*) FROM pledges
      WHERE canceled_at >= :start_at AND canceled_at < :end_at
        AND activated_at IS NOT NULL AND interval <> 'once' {currency}) AS cancelled_pledges
"""


def summary(session: Session, period: Period) -> Summary:
    """Pledges and MRR as they stood at the end of the period, and what changed during it."""
    params = _params(period)
    state = _rows(
        session, SUMMARY_STATE_SQL.format(mrr=MRR, currency=_currency_filter(period)), params
    )
    flow = session.execute(
        text(SUMMARY_FLOW_SQL.format(currency=_currency_filter(period))), params
    ).one()
    rows = [
        SummaryCurrencyRow(
            currency=row["currency"],
            active_pledges=row["active_pledges"],
            past_due_pledges=row["past_due_pledges"],
            contributing_pledges=row["contributing_pledges"],
            mrr=row["mrr"],
            # Rounded half up to a minor unit.
            average_pledge=(
                (2 * row["mrr"] + row["contributing_pledges"]) // (2 * row["contributing_pledges"])
                if row["contributing_pledges"]
                else None
            ),
            amount_at_risk=row["amount_at_risk"],
        )
        for row in state
    ]
    at_start = sum(row["contributing_at_start"] for row in state)
    return Summary(
        from_date=period.from_date,
        to_date=period.to_date,
        timezone=period.timezone,
        currency=period.currency,
        as_of=min(period.end_at, utcnow()),
        active_pledges=sum(row.active_pledges for row in rows),
        past_due_pledges=sum(row.past_due_pledges for row in rows),
        mrr={row.currency: row.mrr for row in rows},
        average_pledge={
            row.currency: row.average_pledge for row in rows if row.average_pledge is not None
        },
        amount_at_risk={row.currency: row.amount_at_risk for row in rows},
        new_pledges=flow.new_pledges,
        new_one_time_gifts=flow.new_one_time_gifts,
        cancelled_pledges=flow.cancelled_pledges,
        contributing_pledges_at_start=at_start,
        churn_rate=_rate(flow.cancelled_pledges, at_start),
        by_currency=rows,
    )


REVENUE_SQL = """
WITH paid AS (
    -- From the quarter-hour rollup the payments trigger keeps: the same sums, without reading
    -- every payment (period boundaries are midnights, which always fall on a quarter hour).
    SELECT date_trunc(:grain, bucket_at AT TIME ZONE :tz)::date AS period, currency,
           sum(payments) AS payments,
           sum(gross_minor) AS gross,
           sum(fees_minor) AS fees,
           sum(fees_unknown_payments) AS fees_unknown_payments
      FROM revenue_rollup
     WHERE bucket_at >= :start_at AND bucket_at < :end_at {currency}
     GROUP BY 1, 2
    HAVING sum(payments) <> 0
), refunded AS (
    SELECT date_trunc(:grain, refunded_at AT TIME ZONE :tz)::date AS period, currency,
           sum(amount_minor) AS refunded
      FROM refunds
     WHERE refunded_at >= :start_at AND refunded_at < :end_at
       AND status NOT IN ('failed', 'canceled') {currency}
     GROUP BY 1, 2
), disputed AS (
    SELECT date_trunc(:grain, opened_at AT TIME ZONE :tz)::date AS period, currency,
           sum(amount_minor) AS disputed
      FROM disputes
     WHERE opened_at >= :start_at AND opened_at < :end_at AND status <> 'won' {currency}
     GROUP BY 1, 2
)
SELECT period, currency,
       coalesce(payments, 0)::bigint AS payments,
       coalesce(gross, 0)::bigint AS gross,
       coalesce(refunded, 0)::bigint AS refunded,
       coalesce(disputed, 0)::bigint AS disputed,
       coalesce(fees, 0)::bigint AS fees,
       coalesce(fees_unknown_payments, 0)::bigint AS fees_unknown_payments,
       (coalesce(gross, 0) - coalesce(fees, 0) - coalesce(refunded, 0)
        - coalesce(disputed, 0))::bigint AS net
  FROM paid
  FULL JOIN refunded USING (period, currency)
  FULL JOIN disputed USING (period, currency)
 ORDER BY period, currency
"""


def revenue(session: Session, period: Period, granularity: str) -> Revenue:
    sql = REVENUE_SQL.format(currency=_currency_filter(period))
    rows = _rows(session, sql, _params(period, grain=granularity))
    return Revenue(
        from_date=period.from_date,
        to_date=period.to_date,
        timezone=period.timezone,
        currency=period.currency,
        granularity=granularity,
        rows=[RevenueRow(**row) for row in rows],
    )


MOVEMENT_SQL = """
WITH months AS (
    SELECT generate_series(CAST(:first_month AS timestamp), CAST(:last_month AS timestamp),
                           interval '1 month')::date AS period
), changes AS (
    SELECT date_trunc('month', changed_at AT TIME ZONE :tz)::date AS period, currency,
           coalesce(sum(mrr_delta_minor) FILTER (WHERE movement = 'new'), 0) AS new,
           coalesce(sum(mrr_delta_minor) FILTER (WHERE movement = 'expansion'), 0) AS expansion,
           -coalesce(sum(mrr_delta_minor) FILTER (WHERE movement = 'contraction'), 0)
               AS contraction,
           -coalesce(sum(mrr_delta_minor) FILTER (WHERE movement = 'churned'), 0) AS churned,
           coalesce(sum(mrr_delta_minor) FILTER (WHERE movement = 'reactivated'), 0)
               AS reactivated,
           count(*) FILTER (WHERE movement = 'new') AS new_count,
           count(*) FILTER (WHERE movement = 'churned') AS churned_count,
           count(*) FILTER (WHERE movement = 'reactivated') AS reactivated_count
      FROM pledge_history
     WHERE changed_at >= :start_at AND changed_at < :end_at
       AND movement IS NOT NULL {currency}
     GROUP BY 1, 2
), save_choices AS (
    -- Only the few save-page rows (partial index); the choice after a start may fall later.
    SELECT changed_at, currency, save_action,
           lead(save_action) OVER (PARTITION BY pledge_id ORDER BY changed_at, id) AS next_action
      FROM pledge_history
     WHERE save_action IS NOT NULL AND changed_at >= :start_at {currency}
), saves AS (
    SELECT date_trunc('month', changed_at AT TIME ZONE :tz)::date AS period, currency,
           count(*) AS cancellations_started,
           count(*) FILTER (WHERE next_action <> 'cancel_started') AS saved
      FROM save_choices
     WHERE save_action = 'cancel_started' AND changed_at < :end_at
     GROUP BY 1, 2
), mrr_now AS (
    SELECT currency, sum({mrr}) AS mrr
      FROM pledges
     WHERE status IN ('active', 'past_due') AND interval <> 'once' {currency}
     GROUP BY currency
), after_end AS (
    SELECT currency, sum(mrr_delta_minor) AS delta
      FROM pledge_history
     WHERE changed_at >= :end_at {currency}
     GROUP BY currency
), currencies AS (
    SELECT currency FROM changes UNION SELECT currency FROM mrr_now
    UNION SELECT currency FROM after_end UNION SELECT currency FROM saves
), grid AS (
    SELECT months.period, currencies.currency,
           coalesce(changes.new, 0) AS new,
           coalesce(changes.expansion, 0) AS expansion,
           coalesce(changes.contraction, 0) AS contraction,
           coalesce(changes.churned, 0) AS churned,
           coalesce(changes.reactivated, 0) AS reactivated,
           coalesce(changes.new_count, 0) AS new_count,
           coalesce(changes.churned_count, 0) AS churned_count,
           coalesce(changes.reactivated_count, 0) AS reactivated_count,
           coalesce(saves.cancellations_started, 0) AS cancellations_started,
           coalesce(saves.saved, 0) AS saved
      FROM months CROSS JOIN currencies
      LEFT JOIN changes USING (period, currency)
      LEFT JOIN saves USING (period, currency)
), with_net AS (
    SELECT grid.*,
           new + expansion - contraction - churned + reactivated AS net_change
      FROM grid
), with_end AS (
    -- MRR at the end of each month: today's, less everything that changed after that month.
    SELECT with_net.*,
           coalesce(mrr_now.mrr, 0) - coalesce(after_end.delta, 0)
           - coalesce(sum(net_change) OVER (
                 PARTITION BY with_net.currency ORDER BY period DESC
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS mrr_end
      FROM with_net
      LEFT JOIN mrr_now USING (currency)
      LEFT JOIN after_end USING (currency)
)
SELECT period, currency,
       (mrr_end - net_change)::bigint AS mrr_start,
       new::bigint, expansion::bigint, contraction::bigint, churned::bigint,
       reactivated::bigint, net_change::bigint, mrr_end::bigint,
       new_count, churned_count, reactivated_count, cancellations_started, saved
  FROM with_end
 WHERE mrr_end <> 0 OR net_change <> 0
       OR new_count + churned_count + reactivated_count + cancellations_started > 0
 ORDER BY period, currency
"""


def movement(session: Session, period: Period) -> Movement:
    """MRR movement per month; a month's `mrr_end` minus `mrr_start` is its `net_change`."""
    sql = MOVEMENT_SQL.format(mrr=MRR, currency=_currency_filter(period))
    params = _params(
        period,
        first_month=period.from_date.replace(day=1),
        last_month=period.to_date.replace(day=1),
    )
    return Movement(
        from_date=period.from_date,
        to_date=period.to_date,
        timezone=period.timezone,
        currency=period.currency,
        rows=[
            MovementRow(**row, save_rate=_rate(row["saved"], row["cancellations_started"]))
            for row in _rows(session, sql, params)
        ],
    )


RECOVERY_SQL = """
WITH failures AS (
    SELECT date_trunc('month', payments.failed_at AT TIME ZONE :tz)::date AS period,
           payments.currency, payments.amount_minor, payments.attempt_count,
           CASE
               WHEN payments.paid_at IS NOT NULL AND payments.status IN ('paid', 'refunded')
                   THEN 'recovered'
               WHEN payments.status = 'void'
                    OR (payments.status = 'failed' AND payments.next_attempt_at IS NULL)
                   THEN 'lost'
               -- Looked up row by row, and only for the few still scheduled for a retry (an
               -- EXISTS here makes PostgreSQL hash every ended pledge first).
               WHEN (SELECT pledges.status FROM pledges WHERE pledges.id = payments.pledge_id)
                    IN ('canceled', 'failed')
                   THEN 'lost'
               ELSE 'retrying'
           END AS outcome
      FROM payments
     WHERE payments.failed_at >= :start_at AND payments.failed_at < :end_at
           {currency}
)
SELECT CASE WHEN grouping(period) = 0 THEN period END AS period, currency,
       count(*) AS failed,
       sum(amount_minor)::bigint AS failed_amount,
       count(*) FILTER (WHERE outcome = 'recovered') AS recovered,
       coalesce(sum(amount_minor) FILTER (WHERE outcome = 'recovered'), 0)::bigint
           AS recovered_amount,
       -- A reminder goes out after each failed attempt, so attempt n+1 follows reminder n.
       count(*) FILTER (WHERE outcome = 'recovered' AND attempt_count <= 2)
           AS recovered_after_reminder_1,
       count(*) FILTER (WHERE outcome = 'recovered' AND attempt_count = 3)
           AS recovered_after_reminder_2,
       count(*) FILTER (WHERE outcome = 'recovered' AND attempt_count >= 4)
           AS recovered_after_reminder_3_or_more,
       count(*) FILTER (WHERE outcome = 'lost') AS lost,
       coalesce(sum(amount_minor) FILTER (WHERE outcome = 'lost'), 0)::bigint AS lost_amount,
       count(*) FILTER (WHERE outcome = 'retrying') AS still_retrying
  FROM failures
 GROUP BY GROUPING SETS ((period, currency), (currency))
 ORDER BY grouping(period), period, currency
"""


def recovery(session: Session, period: Period) -> Recovery:
    """Failed payments by the month they first failed, and what became of them."""
    sql = RECOVERY_SQL.format(currency=_currency_filter(period, "payments.currency"))
    rows = [
        RecoveryRow(**row, recovery_rate=_rate(row["recovered"], row["recovered"] + row["lost"]))
        for row in _rows(session, sql, _params(period))
    ]
    return Recovery(
        from_date=period.from_date,
        to_date=period.to_date,
        timezone=period.timezone,
        currency=period.currency,
        rows=[row for row in rows if row.period is not None],
        totals=[row for row in rows if row.period is None],
    )


ATTRIBUTION_SQL = """
WITH grouped AS (
    SELECT CASE WHEN grouping(campaign) = 0 THEN 'campaign'
                WHEN grouping(source) = 0 THEN 'source'
                ELSE 'article_url' END AS dimension,
           CASE WHEN grouping(campaign) = 0 THEN campaign
                WHEN grouping(source) = 0 THEN source
                ELSE article_url END AS value,
           currency,
           count(*) AS pledges,
           count(*) FILTER (WHERE interval <> 'once') AS recurring_pledges,
           count(*) FILTER (WHERE {mrr} > 0) AS contributing_pledges,
           sum({mrr})::bigint AS mrr,
           coalesce(sum(amount_minor + fee_cover_minor) FILTER (WHERE interval = 'once'), 0)
               ::bigint AS one_time_amount
      FROM pledges
     WHERE activated_at >= :start_at AND activated_at < :end_at {currency}
     GROUP BY GROUPING SETS ((campaign, currency), (source, currency), (article_url, currency))
), ranked AS (
    SELECT grouped.*,
           row_number() OVER (PARTITION BY dimension, currency
                              ORDER BY mrr DESC, pledges DESC, value NULLS LAST) AS rank
      FROM grouped
)
SELECT dimension, value, currency, pledges, recurring_pledges, contributing_pledges, mrr,
       one_time_amount
  FROM ranked
 WHERE rank <= :top
 ORDER BY dimension, currency, rank
"""


def attribution(session: Session, period: Period, top: int = 100) -> Attribution:
    """Pledges that started in the period, and the MRR they bring now, by where they came from.

    The `top` values of each dimension and currency by MRR (articles can number thousands).
    """
    sql = ATTRIBUTION_SQL.format(mrr=MRR, currency=_currency_filter(period))
    return Attribution(
        from_date=period.from_date,
        to_date=period.to_date,
        timezone=period.timezone,
        currency=period.currency,
        top=top,
        rows=[AttributionRow(**row) for row in _rows(session, sql, _params(period, top=top))],
    )


def pledge_list(
    *,
    status: str | None,
    currency: str | None,
    interval: str | None,
    campaign: str | None,
    email: str | None,
    created_from: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
) -> PledgeRows:
    """Pledges newest first, with their reader; the caller picks the columns a role may see."""
    statement = select(Pledge, READER_EMAIL, READER_NAME).join(
        Reader, Reader.id == Pledge.reader_id
    )
    conditions = [
        Pledge.status == status if status else None,
        Pledge.currency == currency if currency else None,
        Pledge.interval == interval if interval else None,
        Pledge.campaign == campaign if campaign else None,
        and_(Reader.email == email.strip().lower(), Reader.erased_at.is_(None)) if email else None,
        Pledge.created_at >= created_from if created_from else None,
        Pledge.created_at < created_before if created_before else None,
        tuple_(Pledge.created_at, Pledge.id) < tuple_(after[0], after[1]) if after else None,
    ]
    return statement.where(and_(True, *[c for c in conditions if c is not None])).order_by(
        Pledge.created_at.desc(), Pledge.id.desc()
    )


def payment_list(
    *,
    status: str | None,
    currency: str | None,
    interval: str | None,
    campaign: str | None,
    email: str | None,
    created_from: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, int] | None,
) -> PaymentRows:
    """Payments newest first; pledge filters (interval, campaign, email) go through the pledge."""
    statement = (
        select(Payment, READER_EMAIL)
        .outerjoin(Pledge, Pledge.id == Payment.pledge_id)
        .outerjoin(Reader, Reader.id == Pledge.reader_id)
    )
    conditions = [
        Payment.status == status if status else None,
        Payment.currency == currency if currency else None,
        Pledge.interval == interval if interval else None,
        Pledge.campaign == campaign if campaign else None,
        and_(Reader.email == email.strip().lower(), Reader.erased_at.is_(None)) if email else None,
        Payment.created_at >= created_from if created_from else None,
        Payment.created_at < created_before if created_before else None,
        or_(
            Payment.created_at < after[0],
            and_(Payment.created_at == after[0], Payment.id < after[1]),
        )
        if after
        else None,
    ]
    return statement.where(and_(True, *[c for c in conditions if c is not None])).order_by(
        Payment.created_at.desc(), Payment.id.desc()
    )


def stream(
    session: Session, statement: PledgeRows | PaymentRows, batch: int = 1000
) -> Iterator[Any]:
    """Rows of a long list through a server-side cursor, never all in memory."""
    yield from session.execute(statement, execution_options={"yield_per": batch})
