"""Shapes of the cohort report; a CSV's columns are CohortRow's fields, in order."""

from pydantic import BaseModel

from billing.reports.schemas import ReportPeriod

COHORT_DIMENSIONS = ("month", "campaign", "source", "article")
RETENTION_MONTHS = 12


class CohortRow(BaseModel):
    """One cohort in one currency. `retained_mN` counts supporters still contributing N months
    after they started, among those who started at least N months ago (`None`: nobody has yet);
    `share_mN` is that count over those supporters, four decimals."""

    cohort: str | None
    currency: str
    supporters: int
    retained_m1: int | None
    retained_m2: int | None
    retained_m3: int | None
    retained_m4: int | None
    retained_m5: int | None
    retained_m6: int | None
    retained_m7: int | None
    retained_m8: int | None
    retained_m9: int | None
    retained_m10: int | None
    retained_m11: int | None
    retained_m12: int | None
    share_m1: str | None
    share_m2: str | None
    share_m3: str | None
    share_m4: str | None
    share_m5: str | None
    share_m6: str | None
    share_m7: str | None
    share_m8: str | None
    share_m9: str | None
    share_m10: str | None
    share_m11: str | None
    share_m12: str | None
    churned_voluntary: int
    churned_failed_payment: int
    recovered: int
    upgraded: int
    revenue_12m: int
    revenue_12m_per_supporter: int


class Cohorts(ReportPeriod):
    by: str
    as_of: str
    rows: list[CohortRow]
