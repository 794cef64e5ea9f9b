"""Stripe payouts and their balance transactions, and a record of every drift check.

Revision ID: 0009_payouts
Revises: 0008_savers
Create Date: 2026-11-29 02:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_payouts"
down_revision: str | None = "0008_savers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("stripe_payout_id", sa.String(length=255), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("arrival_date", sa.Date(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stripe_state_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transactions_loaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("stripe_payout_id", name=op.f("uq_payouts_stripe_payout_id")),
    )
    op.create_index("ix_payouts_arrival_date", "payouts", ["arrival_date", "currency"])
    op.create_table(
        "payout_transactions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("payout_id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_balance_transaction_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("reporting_category", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.id"], name=op.f("fk_payout_transactions_payout_id_payouts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_transactions")),
        sa.UniqueConstraint(
            "stripe_balance_transaction_id",
            name=op.f("uq_payout_transactions_stripe_balance_transaction_id"),
        ),
    )
    op.create_index(
        "ix_payout_transactions_payout_id",
        "payout_transactions",
        ["payout_id"],
        postgresql_include=[
            "type", "reporting_category", "source_id", "amount_minor", "fee_minor", "net_minor",
        ],
    )  # fmt: skip
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("replayed", sa.Integer(), nullable=False),
        sa.Column("unexplained", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )
    op.create_index("ix_reconcile_runs_started_at", "reconcile_runs", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_reconcile_runs_started_at", table_name="reconcile_runs")
    op.drop_table("reconcile_runs")
    op.drop_index("ix_payout_transactions_payout_id", table_name="payout_transactions")
    op.drop_table("payout_transactions")
    op.drop_index("ix_payouts_arrival_date", table_name="payouts")
    op.drop_table("payouts")
