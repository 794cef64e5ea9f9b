"""Reports: pledge history and revenue rollup kept by triggers, and indexes that keep reports fast.

Revision ID: 0004_reports
Revises: 0001
Create Date: 2026-11-26 20:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_reports"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A pledge's monthly recurring revenue in minor units: what its subscription bills (amount plus
# fee cover) while it is active or past due; annual pledges count 1/12, rounded half up per pledge
# so every figure stays an exact integer; one-time gifts never count.
PLEDGE_MRR_FUNCTION = """
CREATE OR REPLACE FUNCTION pledge_mrr_minor(status text, "interval" text, charged bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN status IN ('active', 'past_due') THEN
        CASE "interval" WHEN 'month' THEN charged WHEN 'year' THEN (charged + 6) / 12 ELSE 0 END
    ELSE 0 END
$$
"""

# Written as a trigger so that every writer of `pledges` is recorded without having to know.
RECORD_HISTORY_FUNCTION = """
CREATE OR REPLACE FUNCTION record_pledge_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_mrr bigint := 0;
    new_mrr bigint := pledge_mrr_minor(NEW.status, NEW.interval,
                                       NEW.amount_minor + NEW.fee_cover_minor);
    others bigint;
    kind text := NULL;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.status = OLD.status AND NEW.amount_minor = OLD.amount_minor
           AND NEW.fee_cover_minor = OLD.fee_cover_minor AND NEW.interval = OLD.interval
           AND NEW.currency = OLD.currency THEN
            RETURN NULL;
        END IF;
        old_mrr := pledge_mrr_minor(OLD.status, OLD.interval,
                                    OLD.amount_minor + OLD.fee_cover_minor);
    END IF;
    IF new_mrr <> old_mrr THEN
        -- Movement is judged on the reader's total in this currency, so a reader who cancels one
        -- pledge and starts a bigger one is an expansion, not a churn plus a new supporter.
        SELECT coalesce(sum(pledge_mrr_minor(p.status, p.interval,
                                             p.amount_minor + p.fee_cover_minor)), 0)
          INTO others
          FROM pledges p
         WHERE p.reader_id = NEW.reader_id AND p.currency = NEW.currency AND p.id <> NEW.id;
        IF others + old_mrr = 0 THEN
            kind := CASE WHEN EXISTS (
                SELECT 1 FROM pledge_history h
                 WHERE h.reader_id = NEW.reader_id AND h.currency = NEW.currency
                   AND h.mrr_minor > 0
            ) THEN 'reactivated' ELSE 'new' END;
        ELSIF others + new_mrr = 0 THEN
            kind := 'churned';
        ELSIF new_mrr > old_mrr THEN
            kind := 'expansion';
        ELSE
            kind := 'contraction';
        END IF;
    END IF;
    INSERT INTO pledge_history (pledge_id, reader_id, changed_at, status, previous_status,
                                "interval", currency, mrr_minor, mrr_delta_minor, movement)
    VALUES (NEW.id, NEW.reader_id, NEW.updated_at, NEW.status,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            NEW.interval, NEW.currency, new_mrr, new_mrr - old_mrr, kind);
    RETURN NULL;
END
$$
"""

BACKFILL_HISTORY = """
INSERT INTO pledge_history (pledge_id, reader_id, changed_at, status, "interval", currency,
                            mrr_minor, mrr_delta_minor, movement)
SELECT id, reader_id, coalesce(activated_at, created_at), status, "interval", currency,
       pledge_mrr_minor(status, "interval", amount_minor + fee_cover_minor),
       pledge_mrr_minor(status, "interval", amount_minor + fee_cover_minor),
       CASE WHEN pledge_mrr_minor(status, "interval", amount_minor + fee_cover_minor) > 0
            THEN 'new' END
  FROM pledges
"""


# Revenue by quarter hour (UTC), kept by a trigger on payments: a year of revenue is then a few
# hundred thousand rows at most, whatever the number of payments. Quarter hours, because every
# time zone's midnight falls on one, so months and days in any reporting zone stay exact.
REVENUE_ROLLUP_FUNCTION = """
CREATE OR REPLACE FUNCTION rollup_payment_revenue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.paid_at IS NOT DISTINCT FROM OLD.paid_at AND NEW.status = OLD.status
       AND NEW.amount_minor = OLD.amount_minor AND NEW.currency = OLD.currency
       AND NEW.fee_minor IS NOT DISTINCT FROM OLD.fee_minor THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.paid_at IS NOT NULL
       AND OLD.status IN ('paid', 'refunded') THEN
        UPDATE revenue_rollup
           SET payments = payments - 1,
               gross_minor = gross_minor - OLD.amount_minor,
               fees_minor = fees_minor - coalesce(OLD.fee_minor, 0),
               fees_unknown_payments = fees_unknown_payments - (OLD.fee_minor IS NULL)::int
         WHERE bucket_at = date_bin('15 minutes', OLD.paid_at, TIMESTAMPTZ '2000-01-01 00:00Z')
           AND currency = OLD.currency;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.paid_at IS NOT NULL
       AND NEW.status IN ('paid', 'refunded') THEN
        INSERT INTO revenue_rollup AS r (bucket_at, currency, payments, gross_minor, fees_minor,
                                         fees_unknown_payments)
        VALUES (date_bin('15 minutes', NEW.paid_at, TIMESTAMPTZ '2000-01-01 00:00Z'),
                NEW.currency, 1, NEW.amount_minor, coalesce(NEW.fee_minor, 0),
                (NEW.fee_minor IS NULL)::int)
        ON CONFLICT (bucket_at, currency) DO UPDATE
           SET payments = r.payments + 1,
               gross_minor = r.gross_minor + EXCLUDED.gross_minor,
               fees_minor = r.fees_minor + EXCLUDED.fees_minor,
               fees_unknown_payments = r.fees_unknown_payments + EXCLUDED.fees_unknown_payments;
    END IF;
    RETURN NULL;
END
$$
"""

# Also for operators and bulk loads that ran with triggers off: recompute it from payments.
REBUILD_ROLLUP_FUNCTION = """
CREATE OR REPLACE FUNCTION rebuild_revenue_rollup() RETURNS void LANGUAGE sql AS $$
    DELETE FROM revenue_rollup;
    INSERT INTO revenue_rollup (bucket_at, currency, payments, gross_minor, fees_minor,
                                fees_unknown_payments)
    SELECT date_bin('15 minutes', paid_at, TIMESTAMPTZ '2000-01-01 00:00Z'), currency,
           count(*), sum(amount_minor), coalesce(sum(fee_minor), 0),
           count(*) FILTER (WHERE fee_minor IS NULL)
      FROM payments
     WHERE paid_at IS NOT NULL AND status IN ('paid', 'refunded')
     GROUP BY 1, 2;
$$
"""


# Reports read history rows in a time range without visiting the table.
HISTORY_INCLUDE = [
    "currency", "interval", "status", "previous_status", "mrr_minor", "mrr_delta_minor", "movement",
]  # fmt: skip
FAILED_INCLUDE = [
    "currency", "amount_minor", "attempt_count", "status", "paid_at", "next_attempt_at",
    "pledge_id",
]  # fmt: skip
ACTIVATED_INCLUDE = [
    "currency", "interval", "status", "amount_minor", "fee_cover_minor", "campaign", "source",
    "article_url",
]  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "pledge_history",
        sa.Column(
            "id",
            sa.BigInteger(),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("pledge_id", sa.Uuid(), nullable=False),
        sa.Column("reader_id", sa.Uuid(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=True),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("mrr_minor", sa.BigInteger(), nullable=False),
        sa.Column("mrr_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("movement", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_pledge_history_pledge_id_pledges")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pledge_history")),
    )
    op.create_index(
        "ix_pledge_history_changed_at",
        "pledge_history",
        ["changed_at"],
        unique=False,
        postgresql_include=HISTORY_INCLUDE,
    )
    op.create_index(
        op.f("ix_pledge_history_pledge_id"), "pledge_history", ["pledge_id"], unique=False
    )
    op.create_index(
        "ix_pledge_history_reader_id_currency",
        "pledge_history",
        ["reader_id", "currency"],
        unique=False,
    )
    op.create_table(
        "revenue_rollup",
        sa.Column("bucket_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payments", sa.BigInteger(), nullable=False),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("fees_minor", sa.BigInteger(), nullable=False),
        sa.Column("fees_unknown_payments", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_at", "currency", name=op.f("pk_revenue_rollup")),
    )
    op.create_index(
        "ix_pledges_activated_at",
        "pledges",
        ["activated_at"],
        unique=False,
        postgresql_include=ACTIVATED_INCLUDE,
        postgresql_where=sa.text("activated_at IS NOT NULL"),
    )
    op.create_index("ix_pledges_canceled_at", "pledges", ["canceled_at"], unique=False)
    op.create_index(
        "ix_payments_failed_at",
        "payments",
        ["failed_at"],
        unique=False,
        postgresql_include=FAILED_INCLUDE,
        postgresql_where=sa.text("failed_at IS NOT NULL"),
    )
    op.create_index("ix_payments_created_at_id", "payments", ["created_at", "id"], unique=False)

    # Reports read these without touching the table: index-only scans at millions of rows.
    op.create_index(
        "ix_pledges_contributing",
        "pledges",
        ["currency", "interval"],
        postgresql_include=["amount_minor", "fee_cover_minor", "status"],
        postgresql_where=sa.text("status IN ('active', 'past_due')"),
    )
    op.create_index(
        "ix_payments_revenue",
        "payments",
        ["paid_at"],
        postgresql_include=["currency", "amount_minor", "fee_minor", "status"],
        postgresql_where=sa.text("paid_at IS NOT NULL"),
    )
    op.execute(PLEDGE_MRR_FUNCTION)
    op.execute(RECORD_HISTORY_FUNCTION)
    op.execute(BACKFILL_HISTORY)
    op.execute(
        "CREATE TRIGGER pledges_record_history AFTER INSERT OR UPDATE ON pledges "
        "FOR EACH ROW EXECUTE FUNCTION record_pledge_history()"
    )
    op.execute(REVENUE_ROLLUP_FUNCTION)
    op.execute(REBUILD_ROLLUP_FUNCTION)
    op.execute("SELECT rebuild_revenue_rollup()")
    op.execute(
        "CREATE TRIGGER payments_rollup_revenue AFTER INSERT OR UPDATE OR DELETE ON payments "
        "FOR EACH ROW EXECUTE FUNCTION rollup_payment_revenue()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS payments_rollup_revenue ON payments")
    op.execute("DROP FUNCTION IF EXISTS rebuild_revenue_rollup()")
    op.execute("DROP FUNCTION IF EXISTS rollup_payment_revenue()")
    op.execute("DROP TRIGGER IF EXISTS pledges_record_history ON pledges")
    op.execute("DROP FUNCTION IF EXISTS record_pledge_history()")
    op.execute("DROP FUNCTION IF EXISTS pledge_mrr_minor(text, text, bigint)")
    op.drop_index("ix_payments_revenue", table_name="payments")
    op.drop_index("ix_pledges_contributing", table_name="pledges")
    op.drop_index("ix_payments_created_at_id", table_name="payments")
    op.drop_index("ix_payments_failed_at", table_name="payments")
    op.drop_index("ix_pledges_canceled_at", table_name="pledges")
    op.drop_index("ix_pledges_activated_at", table_name="pledges")
    op.drop_index("ix_pledge_history_reader_id_currency", table_name="pledge_history")
    op.drop_index(op.f("ix_pledge_history_pledge_id"), table_name="pledge_history")
    op.drop_index("ix_pledge_history_changed_at", table_name="pledge_history")
    op.drop_table("pledge_history")
    op.drop_table("revenue_rollup")
