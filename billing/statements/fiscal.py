"""Fiscal years: where a statement's year begins and ends, in the reporting time zone."""

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from billing.reports.params import Period

MONTH_DAY = re.compile(r"^\s*(\d{2})-(\d{2})\s*$")


def parse_month_day(value: str, name: str = "month-day") -> tuple[int, int]:
    """'04-06' → (4, 6). 29 February is refused: most years would have no such start."""
    match = MONTH_DAY.match(value)
    if match is None:
        raise ValueError(f"{name} must be a month-day like 01-01 or 04-06, not {value!r}")
    month, day = int(match.group(1)), int(match.group(2))
    try:
        date(2025, month, day)  # a common year, so 02-29 is refused too
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a day that every year has") from None
    return month, day


@dataclass(frozen=True)
class FiscalYear:
    """Fiscal year `year` runs from its start day in `year` to the day before it in `year + 1`."""

    year: int
    start: tuple[int, int]
    timezone: str

    @property
    def first_day(self) -> date:
        return date(self.year, *self.start)

    @property
    def last_day(self) -> date:
        return date(self.year + 1, *self.start) - timedelta(days=1)

    def period(self, currency: str | None = None) -> "Period":
        """The same period the finance reports use, so a statement ties out to them."""
        # Imported here: settings validate FISCAL_YEAR_START with this module at start-up.
        from billing.reports.params import Period

        return Period(self.first_day, self.last_day, self.timezone, currency)

    @property
    def start_at(self) -> datetime:
        return self.period().start_at

    @property
    def end_at(self) -> datetime:
        return self.period().end_at

    @property
    def label(self) -> str:
        """'2026' for calendar years, '2026/27' when the year straddles two."""
        if self.start == (1, 1):
            return str(self.year)
        return f"{self.year}/{(self.year + 1) % 100:02d}"


def fiscal_year(year: int, fiscal_year_start: str, timezone: str) -> FiscalYear:
    return FiscalYear(year, parse_month_day(fiscal_year_start), timezone)


def fiscal_year_containing(day: date, fiscal_year_start: str, timezone: str) -> FiscalYear:
    start = parse_month_day(fiscal_year_start)
    year = day.year if (day.month, day.day) >= start else day.year - 1
    return FiscalYear(year, start, timezone)


def is_complete(fiscal: FiscalYear, today: date) -> bool:
    """Only a finished year gets a statement: its figures no longer grow."""
    return today > fiscal.last_day
