"""Giving statements: one stable number per reader and fiscal year.

Revision ID: 0007_giving_statements
Revises: 0006_outgoing_webhooks
Create Date: 2026-11-29 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_giving_statements"
down_revision: str | None = "0006_outgoing_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "giving_statements",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("reader_id", sa.Uuid(), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_id"], ["readers.id"], name="fk_giving_statements_reader_id_readers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_giving_statements"),
        sa.UniqueConstraint(
            "reader_id", "fiscal_year", name="uq_giving_statements_reader_id_fiscal_year"
        ),
        sa.UniqueConstraint("number", name="uq_giving_statements_number"),
    )


def downgrade() -> None:
    op.drop_table("giving_statements")
