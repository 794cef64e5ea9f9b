"""What a report request asks for (period, currency, list filters, cursor), parsed and checked."""

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson

from billing.db import utcnow
from billing.models import PledgeInterval, PledgeStatus
from billing.money import CURRENCY_EXPONENTS

GRANULARITIES = ("day", "week", "month")
PAYMENT_STATUSES = ("pending", "paid", "failed", "refunded", "void")
MAX_LIST_LIMIT = 1000
# A day-by-day series longer than this is a mistake, not a report.
MAX_BUCKETS = 1000


class ReportError(Exception):
    """A request the reports cannot answer; `status_code` and `message` go to the client."""

    def __init__(
        self, message: str, status_code: int = 422, field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.field = field
        self.headers = headers


@dataclass(frozen=True)
class Period:
    from_date: date
    to_date: date
    timezone: str
    currency: str | None

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.from_date, time(), tzinfo=ZoneInfo(self.timezone))

    @property
    def end_at(self) -> datetime:
        """The first instant after the period: midnight after `to_date` in the reporting zone."""
        next_day = self.to_date + timedelta(days=1)
        return datetime.combine(next_day, time(), tzinfo=ZoneInfo(self.timezone))


def _parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{name} must be a date like 2026-10-31.", field=name) from None


def parse_currency(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    code = value.lower()
    if code not in CURRENCY_EXPONENTS:
        raise ReportError(
            "currency must be a three-letter code we know, such as EUR.", field="currency"
        )
    return code


def today_in(timezone: str) -> date:
    return utcnow().astimezone(ZoneInfo(timezone)).date()


def parse_period(
    from_value: str | None,
    to_value: str | None,
    currency: str | None,
    timezone: str,
    default_months: int,
) -> Period:
    """`from`/`to` are inclusive dates in the reporting time zone.

    Left out, `to` is today and `from` the first day of the month `default_months - 1` before.
    """
    to_date = _parse_date(to_value, "to") if to_value else today_in(timezone)
    if from_value:
        from_date = _parse_date(from_value, "from")
    else:
        month_index = to_date.year * 12 + to_date.month - 1 - (default_months - 1)
        from_date = date(month_index // 12, month_index % 12 + 1, 1)
    if from_date > to_date:
        raise ReportError("from must be on or before to.", field="from")
    return Period(from_date, to_date, timezone, parse_currency(currency))


def parse_granularity(value: str, period: Period) -> str:
    if value not in GRANULARITIES:
        raise ReportError("granularity must be day, week or month.", field="granularity")
    days = (period.to_date - period.from_date).days + 1
    if value == "day" and days > MAX_BUCKETS:
        raise ReportError(
            f"A daily series covers at most {MAX_BUCKETS} days; ask for weeks or months.",
            field="granularity",
        )
    return value


def parse_choice(value: str | None, choices: tuple[str, ...], name: str) -> str | None:
    if value is None or value == "":
        return None
    if value not in choices:
        raise ReportError(f"{name} must be one of {', '.join(choices)}.", field=name)
    return value


PLEDGE_STATUSES = tuple(status.value for status in PledgeStatus)
INTERVALS = tuple(interval.value for interval in PledgeInterval)


MAX_TOP = 10_000


def parse_top(value: int) -> int:
    if not 1 <= value <= MAX_TOP:
        raise ReportError(f"top must be between 1 and {MAX_TOP}.", field="top")
    return value


def parse_limit(value: int) -> int:
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise ReportError(f"limit must be between 1 and {MAX_LIST_LIMIT}.", field="limit")
    return value


# Lists are ordered newest first by (created_at, id); the cursor is the last item's pair.
def encode_cursor(created_at: datetime, item_id: int | uuid.UUID) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(item_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        created_at, item_id = orjson.loads(raw)
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None or not isinstance(item_id, str):
            raise ValueError
        return moment, item_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ReportError(
            "cursor is not one this API gave out; start again without it.", field="cursor"
        ) from None
