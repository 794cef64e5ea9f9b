"""Every statement's SQL, in one place, on the revenue report's definitions so the two tie out.

A reader's year holds: payments with `paid_at` in it whose status is `paid` or `refunded`
(gross), refunds made in it that did not fail or get cancelled (refunded), and disputes opened in
it (shown; subtracted unless won). Those are `billing.reports.queries.REVENUE_SQL`'s rules, read
per reader through each payment's pledge: summed over readers, a year's statements are the
revenue report for that year, to the cent.
"""

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.statements.fiscal import FiscalYear

# Rows of every reader with anything in [start_at, end_at): a gift, a refund or a dispute.
READER_EVENTS_SQL = """
SELECT pledges.reader_id, payments.id AS payment_id, 'gift' AS kind,
       payments.paid_at AS happened_at, payments.currency, payments.amount_minor AS amount,
       payments.status, pledges.interval
  FROM payments JOIN pledges ON pledges.id = payments.pledge_id
 WHERE payments.paid_at >= :start_at AND payments.paid_at < :end_at
   AND payments.status IN ('paid', 'refunded') {reader}
UNION ALL
SELECT pledges.reader_id, payments.id, 'refund', refunds.refunded_at, refunds.currency,
       refunds.amount_minor, refunds.status, pledges.interval
  FROM refunds
  JOIN payments ON payments.id = refunds.payment_id
  JOIN pledges ON pledges.id = payments.pledge_id
 WHERE refunds.refunded_at >= :start_at AND refunds.refunded_at < :end_at
   AND refunds.status NOT IN ('failed', 'canceled') {reader}
UNION ALL
SELECT pledges.reader_id, payments.id, 'dispute', disputes.opened_at, disputes.currency,
       disputes.amount_minor, disputes.status, pledges.interval
  FROM disputes
  JOIN payments ON payments.id = disputes.payment_id
  JOIN pledges ON pledges.id = payments.pledge_id
 WHERE disputes.opened_at >= :start_at AND disputes.opened_at < :end_at {reader}
"""
ONE_READER = "AND pledges.reader_id = :reader_id"
# Bounds that hold every row, for questions about all of a reader's years at once.
EVER_SINCE = datetime(1970, 1, 1, tzinfo=UTC)
EVER_AFTER = datetime(9999, 1, 1, tzinfo=UTC)


def _window(fiscal: FiscalYear, **extra: Any) -> dict[str, Any]:
    return {"start_at": fiscal.start_at, "end_at": fiscal.end_at, **extra}


def reader_events(session: Session, reader_id: uuid.UUID, fiscal: FiscalYear) -> list[Any]:
    """One reader's gifts, refunds and disputes in the year, oldest first."""
    sql = f"{READER_EVENTS_SQL.format(reader=ONE_READER)} ORDER BY happened_at, payment_id, kind"
    return list(session.execute(text(sql), _window(fiscal, reader_id=reader_id)))


READER_DAYS_SQL = """
SELECT DISTINCT (happened_at AT TIME ZONE :tz)::date AS day
  FROM ({events}) AS events
"""


def reader_days(session: Session, reader_id: uuid.UUID, timezone: str) -> list[date]:
    """Every day on which something went into one of the reader's statements, in any year."""
    events = READER_EVENTS_SQL.format(reader=ONE_READER)
    sql = READER_DAYS_SQL.format(events=events)
    params = {
        "start_at": EVER_SINCE,
        "end_at": EVER_AFTER,
        "tz": timezone,
        "reader_id": reader_id,
    }
    return [row.day for row in session.execute(text(sql), params)]


ALLOCATE_NUMBERS_SQL = """
INSERT INTO giving_statements (id, reader_id, fiscal_year, number, created_at)
SELECT fresh.id, fresh.reader_id, :year,
       :prefix || '-' || CAST(:year AS text) || '-' || lpad(fresh.id::text, 6, '0'), :now
  FROM (SELECT nextval(pg_get_serial_sequence('giving_statements', 'id')) AS id, reader_id
          FROM (SELECT DISTINCT reader_id FROM ({events}) AS events
                EXCEPT
                SELECT reader_id FROM giving_statements WHERE fiscal_year = :year) AS missing
       ) AS fresh
ON CONFLICT (reader_id, fiscal_year) DO NOTHING
"""


def allocate_numbers(
    session: Session, fiscal: FiscalYear, prefix: str, reader_id: uuid.UUID | None = None
) -> None:
    """Give a number to every reader (or this one) with a statement for the year and none yet.

    Idempotent and safe to run concurrently: the unique (reader, year) pair keeps the first.
    """
    events = READER_EVENTS_SQL.format(reader=ONE_READER if reader_id else "")
    params = _window(fiscal, year=fiscal.year, prefix=prefix, reader_id=reader_id, now=utcnow())
    session.execute(text(ALLOCATE_NUMBERS_SQL.format(events=events)), params)


STATEMENT_TOTALS_SQL = """
SELECT events.reader_id,
       CASE WHEN readers.erased_at IS NULL THEN readers.email END AS reader_email,
       CASE WHEN readers.erased_at IS NULL THEN readers.name END AS reader_name,
       giving_statements.number AS statement_number,
       events.currency,
       count(*) FILTER (WHERE kind = 'gift') AS payments,
       coalesce(sum(amount) FILTER (WHERE kind = 'gift'), 0)::bigint AS gross,
       coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0)::bigint AS refunded,
       coalesce(sum(amount) FILTER (WHERE kind = 'dispute' AND status <> 'won'), 0)::bigint
           AS disputed
  FROM ({events}) AS events
  JOIN readers ON readers.id = events.reader_id
  LEFT JOIN giving_statements
         ON giving_statements.reader_id = events.reader_id
        AND giving_statements.fiscal_year = :year
 WHERE TRUE {currency}
 GROUP BY events.reader_id, readers.erased_at, readers.email, readers.name,
          giving_statements.number, events.currency
 ORDER BY giving_statements.number NULLS LAST, events.reader_id, events.currency
"""


def statement_totals(
    session: Session, fiscal: FiscalYear, currency: str | None = None
) -> list[dict[str, Any]]:
    """One row per reader and currency: payments, gross, refunded, disputed."""
    sql = STATEMENT_TOTALS_SQL.format(
        events=READER_EVENTS_SQL.format(reader=""),
        currency="AND events.currency = :currency" if currency else "",
    )
    # As the reports do: JIT costs more than it saves on index-range aggregates.
    session.execute(text("SET LOCAL jit = off"))
    params = _window(fiscal, year=fiscal.year, currency=currency)
    return [dict(row) for row in session.execute(text(sql), params).mappings()]


QUEUE_MAILS_SQL = """
WITH recipients AS (
    SELECT DISTINCT ON (events.reader_id)
           events.reader_id, readers.email, readers.locale, newest.id AS pledge_id
      FROM ({events}) AS events
      JOIN readers ON readers.id = events.reader_id AND readers.erased_at IS NULL
      -- The reader's newest pledge: its signed link goes in the mail, and the outbox checks
      -- erasure through it at send time.
      JOIN LATERAL (SELECT id FROM pledges WHERE pledges.reader_id = events.reader_id
                     ORDER BY created_at DESC, id DESC LIMIT 1) AS newest ON TRUE
     ORDER BY events.reader_id
), inserted AS (
    INSERT INTO email_outbox (dedupe_key, template, to_email, locale, context, pledge_id,
                              status, attempts, send_after, created_at, updated_at)
    SELECT :key_prefix || ':' || reader_id::text || ':' || CAST(:year AS text), :template,
           email, locale,
           jsonb_build_object('reader_id', reader_id::text, 'fiscal_year', CAST(:year AS int)),
           pledge_id, 'pending', 0, :now, :now, :now
      FROM recipients
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING dedupe_key
)
SELECT (SELECT count(*) FROM recipients) AS readers,
       coalesce((SELECT array_agg(dedupe_key) FROM inserted), '{{}}') AS inserted
"""


def queue_statement_mails(
    session: Session, fiscal: FiscalYear, *, template: str, key_prefix: str
) -> tuple[list[str], int]:
    """Outbox rows for every reader (not erased) with a statement; the new keys, and readers."""
    sql = QUEUE_MAILS_SQL.format(events=READER_EVENTS_SQL.format(reader=""))
    # The application's clock, not the database's, like every other outbox row.
    params = _window(
        fiscal, year=fiscal.year, template=template, key_prefix=key_prefix, now=utcnow()
    )
    row = session.execute(text(sql), params).one()
    return list(row.inserted), int(row.readers)


def statement_number(session: Session, reader_id: uuid.UUID, year: int) -> str | None:
    sql = "SELECT number FROM giving_statements WHERE reader_id = :reader_id AND fiscal_year = :y"
    value = session.execute(text(sql), {"reader_id": reader_id, "y": year}).scalar()
    return None if value is None else str(value)
