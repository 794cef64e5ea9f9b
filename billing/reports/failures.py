"""The failed-payments list: each failure, why the bank declined it, the reminders the reader got,
and what happened next. Its SQL, its rows and its pages, in one place.

Outcomes use the recovery report's rules, so the list's counts tie out to it: `recovered` is a
payment paid after failing; `canceled` is the recovery report's *lost* (Stripe voided it or
stopped retrying, or its pledge ended); `still_failing` is everything else.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from billing.db import get_sessionmaker
from billing.notifications import REMINDER_TEMPLATES
from billing.reports.auth import Principal
from billing.reports.params import (
    ReportError,
    decode_cursor,
    encode_cursor,
    parse_choice,
    parse_currency,
    parse_period,
)

OUTCOMES = ("recovered", "still_failing", "canceled")
CSV_BATCH = 1000


class FailureItem(BaseModel):
    payment_id: int
    pledge_id: uuid.UUID | None
    failed_at: datetime
    amount: int
    currency: str
    attempt_count: int
    # Stripe's decline code (e.g. insufficient_funds) and the bank's message.
    failure_code: str | None
    failure_message: str | None
    reminders_sent: int
    # The templates sent, oldest first, space-separated (payment_failed payment_reminder ...).
    reminders: str | None
    last_reminder_at: datetime | None
    next_attempt_at: datetime | None
    outcome: str
    recovered_at: datetime | None
    pledge_status: str | None
    stripe_invoice_id: str | None
    stripe_payment_intent_id: str | None


class FailureItemWithReader(FailureItem):
    reader_email: str | None


class FailurePage(BaseModel):
    items: list[FailureItemWithReader] | list[FailureItem]
    next_cursor: str | None


FAILURES_SQL = """
SELECT * FROM (
    SELECT payments.id AS payment_id, payments.pledge_id, payments.failed_at,
           payments.amount_minor AS amount, payments.currency, payments.attempt_count,
           payments.failure_code, payments.failure_message,
           coalesce(reminders.sent, 0) AS reminders_sent, reminders.templates AS reminders,
           reminders.last_sent_at AS last_reminder_at, payments.next_attempt_at,
           CASE
               WHEN payments.paid_at IS NOT NULL AND payments.status IN ('paid', 'refunded')
                   THEN 'recovered'
               WHEN payments.status = 'void'
                    OR (payments.status = 'failed' AND payments.next_attempt_at IS NULL)
                    OR pledges.status IN ('canceled', 'failed')
                   THEN 'canceled'
               ELSE 'still_failing'
           END AS outcome,
           CASE WHEN payments.status IN ('paid', 'refunded') THEN payments.paid_at END
               AS recovered_at,
           pledges.status AS pledge_status,
           payments.stripe_invoice_id, payments.stripe_payment_intent_id,
           CASE WHEN readers.erased_at IS NULL THEN readers.email END AS reader_email
      FROM payments
      LEFT JOIN pledges ON pledges.id = payments.pledge_id
      LEFT JOIN readers ON readers.id = pledges.reader_id
      LEFT JOIN LATERAL (
          SELECT count(*) AS sent, max(sent_at) AS last_sent_at,
                 string_agg(template, ' ' ORDER BY sent_at, id) AS templates
            FROM email_outbox
           WHERE email_outbox.payment_id = payments.id AND email_outbox.status = 'sent'
             AND email_outbox.template = ANY(:reminder_templates)
      ) AS reminders ON TRUE
     WHERE payments.failed_at IS NOT NULL {conditions}
) AS failures
WHERE TRUE {outcome}
ORDER BY failed_at DESC, payment_id DESC
LIMIT :limit
"""


class FailureFilters:
    """`from`/`to` on the day a payment failed (reporting time zone), currency and outcome."""

    def __init__(
        self, *, from_value: str | None, to_value: str | None, currency: str | None,
        outcome: str | None, timezone: str,
    ) -> None:  # fmt: skip
        self.currency = parse_currency(currency)
        self.outcome = parse_choice(outcome, OUTCOMES, "outcome")
        self.start_at = self.end_at = None
        if from_value or to_value:
            period = parse_period(from_value or "1970-01-01", to_value, None, timezone, 1)
            self.start_at, self.end_at = period.start_at, period.end_at


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    if not decoded[1].isdigit():
        raise ReportError("cursor is not one this API gave out.", field="cursor")
    return decoded[0], int(decoded[1])


def _rows(
    session: Session, filters: FailureFilters, after: tuple[datetime, int] | None, limit: int
) -> list[dict[str, Any]]:
    conditions = [
        "AND payments.failed_at >= :start_at" if filters.start_at else "",
        "AND payments.failed_at < :end_at" if filters.end_at else "",
        "AND payments.currency = :currency" if filters.currency else "",
        "AND (payments.failed_at, payments.id) < (:after_at, :after_id)" if after else "",
    ]
    sql = FAILURES_SQL.format(
        conditions=" ".join(conditions),
        outcome="AND outcome = :outcome" if filters.outcome else "",
    )
    params = {
        "start_at": filters.start_at, "end_at": filters.end_at, "currency": filters.currency,
        "outcome": filters.outcome, "after_at": after[0] if after else None,
        "after_id": after[1] if after else None, "limit": limit,
        "reminder_templates": sorted(REMINDER_TEMPLATES),
    }  # fmt: skip
    return [dict(row) for row in session.execute(text(sql), params).mappings()]


def item_model(principal: Principal) -> type[FailureItem]:
    return FailureItemWithReader if principal.sees_personal_data else FailureItem


def _item(model: type[FailureItem], row: dict[str, Any]) -> FailureItem:
    return model.model_validate({key: row[key] for key in model.model_fields})


def failure_page(
    session: Session, filters: FailureFilters, principal: Principal, cursor: str | None,
    limit: int,
) -> FailurePage:  # fmt: skip
    """Failed payments, the most recent failure first; `next_cursor` continues the list."""
    model = item_model(principal)
    rows = _rows(session, filters, _after(cursor), limit + 1)
    items = [_item(model, row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_cursor(last["failed_at"], last["payment_id"]) if last else None
    return FailurePage(items=items, next_cursor=next_cursor)


def all_failures(filters: FailureFilters, principal: Principal) -> Iterator[FailureItem]:
    """Every matching failure for a CSV download, a page at a time on a session of its own."""
    model = item_model(principal)
    after: tuple[datetime, int] | None = None
    with get_sessionmaker()() as session:
        while True:
            rows = _rows(session, filters, after, CSV_BATCH)
            for row in rows:
                yield _item(model, row)
            if len(rows) < CSV_BATCH:
                return
            after = rows[-1]["failed_at"], rows[-1]["payment_id"]
