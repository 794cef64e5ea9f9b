"""The cohort report's SQL: one statement over a row per supporter, aggregates in PostgreSQL.

Definitions (also in docs/reports.md); the per-supporter facts are computed by the view
`cohort_supporter_facts` (migration 0011_cohort_supporters), the months since the start here:
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
# date_part, not extract: whole numbers in float8 are exact, and far cheaper than numeric.
WHOLE_MONTHS = "(date_part('year', age({to}, started_at)) * 12 + date_part('month', age({to}, started_at)))::int"  # noqa: E501


# `cohort_supporters` holds the view's rows, kept by triggers; months are counted here because
# they depend on `as_of`. MATERIALIZED: each supporter's months are worked out once, not again
# in each of the 24 month columns that compare them.
COHORTS_SQL = """
WITH facts AS MATERIALIZED (
    SELECT {cohort} AS cohort, s.currency, s.churn, s.recovered, s.upgraded,
           s.revenue_12m_minor, {followed} AS months_followed,
           coalesce({giving}, {max_months}) AS months_giving
      FROM cohort_supporters s
     WHERE s.started_at >= :start_at AND s.started_at < :end_at {currency}
)
SELECT cohort, currency, count(*) AS supporters,
       {retention},
       count(*) FILTER (WHERE churn = 'voluntary') AS churned_voluntary,
       count(*) FILTER (WHERE churn = 'failed_payment') AS churned_failed_payment,
       count(*) FILTER (WHERE recovered) AS recovered,
       count(*) FILTER (WHERE upgraded) AS upgraded,
       sum(revenue_12m_minor)::bigint AS revenue_12m
  FROM facts
 GROUP BY cohort, currency
 ORDER BY cohort NULLS LAST, currency
"""


def _share(numerator: int, denominator: int) -> str | None:
    """numerator / denominator rounded half up to four decimals, in integers (an article
    report has thousands of rows, each with twelve shares)."""
    if denominator == 0:
        return None
    ten_thousandths = (20_000 * numerator + denominator) // (2 * denominator)
    return f"{ten_thousandths // 10_000}.{ten_thousandths % 10_000:04d}"


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
        currency="AND s.currency = :currency" if period.currency else "",
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
