"""The cohort report's SQL: one statement, aggregates in PostgreSQL.

Definitions (also in docs/reports.md):
- A supporter is a reader in one currency; they start with their first recurring pledge's
  activation, and that pledge names their cohort (its month, campaign, source or article).
- Still contributing N months on: not every one of their recurring pledges in that currency had
  ended (cancelled or failed) by start + N months. A pause is not an end.
- Churned: every recurring pledge has ended; through failed payments when the pledge that ended
  last was cancelled by Stripe for non-payment or left a payment unpaid, else voluntary.
- Recovered: a payment of theirs that failed and was paid later. Upgraded: their MRR in the
  currency rose after they started (an expansion in pledge_history).
- 12-month revenue: payments paid (status paid or refunded) within 12 months of the start, as the
  revenue report counts gross.
"""

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from billing.cohorts.schemas import RETENTION_MONTHS, CohortRow, Cohorts
from billing.db import utcnow
from billing.reports.params import Period

COHORT_OF = {
    "month": "to_char(s.started_at AT TIME ZONE :tz, 'YYYY-MM')",
    "campaign": "s.campaign",
    "source": "s.source",
    "article": "s.article_url",
}
RETENTION_COLUMNS = ",\n".join(
    f"count(*) FILTER (WHERE months_followed >= {k}) AS observed_m{k},\n"
    f"count(*) FILTER (WHERE months_followed >= {k} AND months_giving >= {k}) AS retained_m{k}"
    for k in range(1, RETENTION_MONTHS + 1)
)
# Whole calendar months from the start to a moment: N when start + N months <= moment.
WHOLE_MONTHS = "(extract(year FROM age({to}, started_at)) * 12 + extract(month FROM age({to}, started_at)))::int"  # noqa: E501


COHORTS_SQL = """
WITH supporters AS (
    SELECT p.reader_id, p.currency, p.activated_at AS started_at,
           p.campaign, p.source, p.article_url
      FROM pledges p
     WHERE p.activated_at >= :start_at AND p.activated_at < :end_at AND p.interval <> 'once'
           {currency}
       -- the reader's first recurring pledge in this currency: no earlier one
       AND NOT EXISTS (
           SELECT 1 FROM pledges e
            WHERE e.reader_id = p.reader_id AND e.currency = p.currency
              AND e.interval <> 'once' AND e.activated_at IS NOT NULL
              AND (e.activated_at, e.id) < (p.activated_at, p.id))
), held AS NOT MATERIALIZED (
    SELECT s.reader_id, s.currency, s.started_at, {cohort} AS cohort, p.id AS pledge_id,
           p.status, coalesce(p.canceled_at, p.updated_at) AS ended_at, p.cancel_reason
      FROM supporters s
      JOIN pledges p ON p.reader_id = s.reader_id AND p.currency = s.currency
     WHERE p.interval <> 'once' AND p.activated_at IS NOT NULL
), per_pledge AS (
    -- Payments summed per pledge first: the planner hashes the few pledges and reads payments
    -- once, instead of looking them up supporter by supporter.
    SELECT h.pledge_id,
           coalesce(sum(pm.amount_minor) FILTER (
               WHERE pm.status IN ('paid', 'refunded') AND pm.paid_at >= h.started_at
                 AND pm.paid_at < h.started_at + interval '12 months'), 0) AS revenue_12m,
           bool_or(pm.failed_at IS NOT NULL AND pm.status IN ('paid', 'refunded')) AS recovered,
           bool_or(pm.status IN ('failed', 'void') AND pm.paid_at IS NULL) AS left_unpaid
      FROM held h
      JOIN payments pm ON pm.pledge_id = h.pledge_id
     GROUP BY h.pledge_id
), per_supporter AS (
    SELECT h.reader_id, h.currency, h.cohort, h.started_at,
           bool_and(h.status IN ('canceled', 'failed')) AS ended,
           max(h.ended_at) AS ended_at,
           -- the pledge that ended last says how the supporter left
           (array_agg(h.cancel_reason ORDER BY h.ended_at DESC))[1] AS last_reason,
           (array_agg(coalesce(m.left_unpaid, false) ORDER BY h.ended_at DESC))[1]
               AS last_left_unpaid,
           coalesce(sum(m.revenue_12m), 0) AS revenue_12m,
           coalesce(bool_or(m.recovered), false) AS recovered
      FROM held h
      LEFT JOIN per_pledge m USING (pledge_id)
     GROUP BY h.reader_id, h.currency, h.cohort, h.started_at
), facts AS (
    -- Whole months once per supporter, so each retention column is a plain comparison.
    SELECT s.*, {followed} AS months_followed,
           CASE WHEN s.ended THEN {giving} ELSE {max_months} END AS months_giving,
           s.ended AND (s.last_reason IS NOT DISTINCT FROM 'payment_failed'
                       OR s.last_left_unpaid) AS failed_churn,
           EXISTS (SELECT 1 FROM pledge_history ph
                    WHERE ph.reader_id = s.reader_id AND ph.currency = s.currency
                      AND ph.movement = 'expansion' AND ph.changed_at > s.started_at) AS upgraded
      FROM per_supporter s
)
SELECT cohort, currency, count(*) AS supporters,
       {retention},
       count(*) FILTER (WHERE ended AND NOT failed_churn) AS churned_voluntary,
       count(*) FILTER (WHERE failed_churn) AS churned_failed_payment,
       count(*) FILTER (WHERE recovered) AS recovered,
       count(*) FILTER (WHERE upgraded) AS upgraded,
       sum(revenue_12m)::bigint AS revenue_12m
  FROM facts
 GROUP BY cohort, currency
 ORDER BY cohort NULLS LAST, currency
"""


def _share(numerator: int, denominator: int) -> str | None:
    if denominator == 0:
        return None
    share = Decimal(numerator) / Decimal(denominator)
    return str(share.quantize(Decimal("0.0001"), ROUND_HALF_UP))


def _row(found: dict[str, Any]) -> CohortRow:
    values: dict[str, Any] = {
        key: found[key]
        for key in ("cohort", "currency", "supporters", "churned_voluntary",
                    "churned_failed_payment", "recovered", "upgraded", "revenue_12m")
    }  # fmt: skip
    for k in range(1, RETENTION_MONTHS + 1):
        observed, retained = found[f"observed_m{k}"], found[f"retained_m{k}"]
        values[f"retained_m{k}"] = retained if observed else None
        values[f"share_m{k}"] = _share(retained, observed)
    supporters = found["supporters"]
    # Rounded half up to a minor unit, in integers.
    values["revenue_12m_per_supporter"] = (2 * found["revenue_12m"] + supporters) // (
        2 * supporters
    )
    return CohortRow(**values)


def cohorts(session: Session, *, period: Period, by: str, as_of: datetime | None = None) -> Cohorts:
    """Supporters who started in the period, grouped by `by`, followed to `as_of` (now)."""
    moment = as_of or utcnow()
    sql = COHORTS_SQL.format(
        cohort=COHORT_OF[by],
        currency="AND p.currency = :currency" if period.currency else "",
        retention=RETENTION_COLUMNS,
        followed=WHOLE_MONTHS.format(to=":as_of"),
        giving=WHOLE_MONTHS.format(to="s.ended_at"),
        max_months=RETENTION_MONTHS,
    )
    params = {
        "start_at": period.start_at, "end_at": period.end_at, "tz": period.timezone,
        "currency": period.currency, "as_of": moment,
    }  # fmt: skip
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    rows = [_row(dict(found)) for found in session.execute(text(sql), params).mappings()]
    return Cohorts(
        from_date=period.from_date, to_date=period.to_date, timezone=period.timezone,
        currency=period.currency, by=by, as_of=moment.isoformat(), rows=rows,
    )  # fmt: skip
