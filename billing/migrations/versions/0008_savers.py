"""The supporter's year: pause dates, the paying card's expiry, gift upgrades, save choices.

Revision ID: 0008_savers
Revises: 0007_giving_statements
Create Date: 2026-11-29 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_savers"
down_revision: str | None = "0007_giving_statements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("pledges", sa.Column("resumes_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("pledges", sa.Column("stripe_payment_method_id", sa.String(255), nullable=True))
    op.add_column("pledges", sa.Column("card_exp_month", sa.SmallInteger(), nullable=True))
    op.add_column("pledges", sa.Column("card_exp_year", sa.SmallInteger(), nullable=True))
    op.add_column("pledges", sa.Column("upgraded_from_pledge_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_pledges_upgraded_from_pledge_id_pledges"),
        "pledges", "pledges", ["upgraded_from_pledge_id"], ["id"],
    )  # fmt: skip
    # One monthly pledge per gift, however often its link is clicked.
    op.create_unique_constraint(
        op.f("uq_pledges_upgraded_from_pledge_id"), "pledges", ["upgraded_from_pledge_id"]
    )
    op.create_index(
        "ix_pledges_resumes_at", "pledges", ["resumes_at"],
        postgresql_where=sa.text("status = 'paused'"),
    )  # fmt: skip
    op.create_index("ix_pledges_stripe_payment_method_id", "pledges", ["stripe_payment_method_id"])
    op.add_column("pledge_history", sa.Column("save_action", sa.String(16), nullable=True))
    op.create_index(
        "ix_pledge_history_save_action", "pledge_history", ["changed_at"],
        postgresql_include=["currency", "save_action"],
        postgresql_where=sa.text("save_action IS NOT NULL"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_pledge_history_save_action", table_name="pledge_history")
    op.drop_column("pledge_history", "save_action")
    op.drop_index("ix_pledges_stripe_payment_method_id", table_name="pledges")
    op.drop_index("ix_pledges_resumes_at", table_name="pledges")
    op.drop_constraint(op.f("uq_pledges_upgraded_from_pledge_id"), "pledges", type_="unique")
    op.drop_constraint(
        op.f("fk_pledges_upgraded_from_pledge_id_pledges"), "pledges", type_="foreignkey"
    )
    for column in (
        "upgraded_from_pledge_id", "card_exp_year", "card_exp_month",
        "stripe_payment_method_id", "resumes_at",
    ):  # fmt: skip
        op.drop_column("pledges", column)
