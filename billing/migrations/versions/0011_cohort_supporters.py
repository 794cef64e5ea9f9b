"""Cohorts: a row per supporter kept by deferred triggers, so the report never reads payments;
and the revenue index also covers a month's journal export.

Revision ID: 0011_cohort_supporters
Revises: 0010_inbox_queue
Create Date: 2026-11-29 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_cohort_supporters"
down_revision: str | None = "0010_inbox_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The one definition of a supporter's cohort facts (docs/reports.md, "Cohorts"), its columns in
# the table's order. A filter on reader_id and currency reaches the pledges scan through the
# grouping and the windows, so the triggers read one supporter's pledges and payments by index;
# the rebuild reads everything once.
FACTS_VIEW = """
CREATE VIEW cohort_supporter_facts AS
WITH held AS (
    -- Every recurring pledge that started, beside its supporter's start, and whether it is the
    -- first pledge (it names the cohort) or the one that ended last (it says how they left).
    SELECT p.id, p.reader_id, p.currency, p.status, p.cancel_reason,
           p.campaign, p.source, p.article_url,
           coalesce(p.canceled_at, p.updated_at) AS ended_at,
           min(p.activated_at) OVER supporter AS started_at,
           row_number() OVER (supporter ORDER BY p.activated_at, p.id) = 1 AS first,
           row_number() OVER (supporter ORDER BY coalesce(p.canceled_at, p.updated_at) DESC,
                                                 p.id DESC) = 1 AS ended_last
      FROM pledges p
     WHERE p.interval <> 'once' AND p.activated_at IS NOT NULL
    WINDOW supporter AS (PARTITION BY p.reader_id, p.currency)
), per_supporter AS (
    -- A row per pledge and payment: pledge facts repeat, which min, max and bool_* ignore.
    SELECT h.reader_id, h.currency, min(h.started_at) AS started_at,
           min(h.campaign) FILTER (WHERE h.first) AS campaign,
           min(h.source) FILTER (WHERE h.first) AS source,
           min(h.article_url) FILTER (WHERE h.first) AS article_url,
           bool_and(h.status IN ('canceled', 'failed')) AS ended,
           max(h.ended_at) AS ended_at,
           coalesce(bool_or(h.ended_last AND (h.cancel_reason = 'payment_failed'
                                              OR (pm.status IN ('failed', 'void')
                                                  AND pm.paid_at IS NULL))), false)
               AS left_by_failed_payment,
           coalesce(bool_or(pm.failed_at IS NOT NULL AND pm.status IN ('paid', 'refunded')),
                    false) AS recovered,
           coalesce(sum(pm.amount_minor) FILTER (
               WHERE pm.status IN ('paid', 'refunded') AND pm.paid_at >= h.started_at
                 AND pm.paid_at < h.started_at + interval '12 months'), 0)::bigint AS revenue_12m
      FROM held h
      LEFT JOIN payments pm ON pm.pledge_id = h.id
     GROUP BY h.reader_id, h.currency
)
SELECT s.reader_id, s.currency, s.started_at, s.campaign, s.source, s.article_url,
       CASE WHEN NOT s.ended THEN NULL
            WHEN s.left_by_failed_payment THEN 'failed_payment'
            ELSE 'voluntary' END AS churn,
       CASE WHEN s.ended THEN s.ended_at END AS ended_at,
       s.recovered,
       EXISTS (SELECT 1 FROM pledge_history ph
                WHERE ph.reader_id = s.reader_id AND ph.currency = s.currency
                  AND ph.movement = 'expansion' AND ph.changed_at > s.started_at) AS upgraded,
       s.revenue_12m AS revenue_12m_minor
  FROM per_supporter s
"""

# `+ interval '12 months'` counts months in the session's time zone: UTC, whoever writes.
REFRESH_FUNCTION = """
CREATE FUNCTION refresh_cohort_supporter(of_reader uuid, of_currency text) RETURNS void
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    refreshed text := coalesce(current_setting('pledges.cohorts_refreshed', true), '');
    supporter text := of_reader::text || of_currency || ';';
BEGIN
    -- The triggers are deferred to the commit, after every change the transaction made: a
    -- supporter refreshed once there is current for the rest of it (a batch of renewals
    -- touches each supporter once per payment).
    IF position(supporter IN refreshed) > 0 THEN
        RETURN;
    END IF;
    -- Two transactions changing the same supporter take turns, and the second recomputes after
    -- the first commits (a new snapshot per statement): neither writes a row without the
    -- other's change.
    PERFORM pg_advisory_xact_lock(hashtext('cohort_supporters'),
                                  hashtext(of_reader::text || of_currency));
    DELETE FROM cohort_supporters WHERE reader_id = of_reader AND currency = of_currency;
    INSERT INTO cohort_supporters
    SELECT * FROM cohort_supporter_facts WHERE reader_id = of_reader AND currency = of_currency;
    PERFORM set_config('pledges.cohorts_refreshed', refreshed || supporter, true);
END
$$
"""

# Also for operators and bulk loads that ran with triggers off.
REBUILD_FUNCTION = """
CREATE FUNCTION rebuild_cohort_supporters() RETURNS void
LANGUAGE sql SET timezone = 'UTC' AS $$
    DELETE FROM cohort_supporters;
    INSERT INTO cohort_supporters SELECT * FROM cohort_supporter_facts;
$$
"""

# Pledges: the columns the view reads. updated_at stands for the end of a pledge that ended
# without canceled_at and counts for nothing else, so the touch every renewal gives a running
# pledge refreshes nothing.
PLEDGE_TRIGGER_FUNCTION = """
CREATE FUNCTION refresh_cohort_of_pledge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.reader_id, NEW.currency, NEW.interval, NEW.activated_at, NEW.status,
            NEW.cancel_reason, NEW.campaign, NEW.source, NEW.article_url, NEW.canceled_at)
           IS NOT DISTINCT FROM
           (OLD.reader_id, OLD.currency, OLD.interval, OLD.activated_at, OLD.status,
            OLD.cancel_reason, OLD.campaign, OLD.source, OLD.article_url, OLD.canceled_at)
       AND (NEW.updated_at = OLD.updated_at OR NEW.canceled_at IS NOT NULL
            OR NEW.status NOT IN ('canceled', 'failed')) THEN
        RETURN NULL;
    END IF;
    -- One-time gifts and pledges that never started belong to no cohort.
    IF coalesce(NEW.interval = 'once' OR NEW.activated_at IS NULL, true)
       AND coalesce(OLD.interval = 'once' OR OLD.activated_at IS NULL, true) THEN
        RETURN NULL;
    END IF;
    PERFORM refresh_cohort_supporter(k.reader_id, k.currency)
       FROM (SELECT OLD.reader_id, OLD.currency UNION SELECT NEW.reader_id, NEW.currency)
            AS k (reader_id, currency)
      WHERE k.reader_id IS NOT NULL;
    RETURN NULL;
END
$$
"""

# Payments: a pending payment counts in no cohort figure, and neither does a one-time gift's.
PAYMENT_TRIGGER_FUNCTION = """
CREATE FUNCTION refresh_cohort_of_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.pledge_id, NEW.status, NEW.amount_minor, NEW.paid_at, NEW.failed_at)
           IS NOT DISTINCT FROM
           (OLD.pledge_id, OLD.status, OLD.amount_minor, OLD.paid_at, OLD.failed_at) THEN
        RETURN NULL;
    END IF;
    IF coalesce(NEW.status = 'pending', true) AND coalesce(OLD.status = 'pending', true) THEN
        RETURN NULL;
    END IF;
    PERFORM refresh_cohort_supporter(p.reader_id, p.currency)
       FROM pledges p
      WHERE p.id IN (OLD.pledge_id, NEW.pledge_id)
        AND p.interval <> 'once' AND p.activated_at IS NOT NULL;
    RETURN NULL;
END
$$
"""

# History rows are only ever added; an expansion makes its supporter upgraded.
HISTORY_TRIGGER_FUNCTION = """
CREATE FUNCTION refresh_cohort_of_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM refresh_cohort_supporter(NEW.reader_id, NEW.currency);
    RETURN NULL;
END
$$
"""

# Deferred to the commit: a webhook that records a payment and moves its pledge refreshes the
# supporter with everything it wrote, and takes the supporter's lock only for the commit.
TRIGGERS = {
    "payments_refresh_cohort": (
        "AFTER INSERT OR UPDATE OR DELETE ON payments", "", "refresh_cohort_of_payment()"
    ),
    "pledges_refresh_cohort": (
        "AFTER INSERT OR UPDATE OR DELETE ON pledges", "", "refresh_cohort_of_pledge()"
    ),
    "pledge_history_refresh_cohort": (
        "AFTER INSERT ON pledge_history", "WHEN (NEW.movement = 'expansion')",
        "refresh_cohort_of_history()",
    ),
}  # fmt: skip


REVENUE_INCLUDE = ["currency", "amount_minor", "fee_minor", "status"]
# The references a month's journal export writes: with them it never reads the table.
JOURNAL_INCLUDE = ["stripe_charge_id", "stripe_payment_intent_id", "stripe_invoice_id"]


def _revenue_index(include: list[str]) -> None:
    op.drop_index("ix_payments_revenue", table_name="payments")
    op.create_index(
        "ix_payments_revenue", "payments", ["paid_at"], postgresql_include=include,
        postgresql_where=sa.text("paid_at IS NOT NULL"),
    )  # fmt: skip


def upgrade() -> None:
    _revenue_index(REVENUE_INCLUDE + JOURNAL_INCLUDE)
    op.create_table(
        "cohort_supporters",
        sa.Column("reader_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("article_url", sa.String(length=2048), nullable=True),
        sa.Column("churn", sa.String(length=16), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recovered", sa.Boolean(), nullable=False),
        sa.Column("upgraded", sa.Boolean(), nullable=False),
        sa.Column("revenue_12m_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("reader_id", "currency", name=op.f("pk_cohort_supporters")),
    )
    op.create_index(op.f("ix_cohort_supporters_started_at"), "cohort_supporters", ["started_at"])
    op.execute(FACTS_VIEW)
    op.execute(REFRESH_FUNCTION)
    op.execute(REBUILD_FUNCTION)
    op.execute(PLEDGE_TRIGGER_FUNCTION)
    op.execute(PAYMENT_TRIGGER_FUNCTION)
    op.execute(HISTORY_TRIGGER_FUNCTION)
    # Triggers before the backfill: creating them locks out writers until this commits, so no
    # change lands between the backfill's snapshot and the triggers.
    for name, (events, condition, function) in TRIGGERS.items():
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {name} {events} DEFERRABLE INITIALLY DEFERRED "
            f"FOR EACH ROW {condition} EXECUTE FUNCTION {function}"
        )
    op.execute("SELECT rebuild_cohort_supporters()")


def downgrade() -> None:
    for name, (events, _condition, _function) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {events.rsplit(' ', 1)[1]}")
    for function in (
        "refresh_cohort_of_history()", "refresh_cohort_of_payment()", "refresh_cohort_of_pledge()",
        "rebuild_cohort_supporters()", "refresh_cohort_supporter(uuid, text)",
    ):  # fmt: skip
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.execute("DROP VIEW IF EXISTS cohort_supporter_facts")
    op.drop_index(op.f("ix_cohort_supporters_started_at"), table_name="cohort_supporters")
    op.drop_table("cohort_supporters")
    _revenue_index(REVENUE_INCLUDE)
