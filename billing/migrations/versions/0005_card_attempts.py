"""Cards tried per pledge: the confirm refuses a pledge form past its few cards.

Revision ID: 0005_card_attempts
Revises: 0004_reports
Create Date: 2026-11-29 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_card_attempts"
down_revision: str | None = "0004_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pledges", sa.Column("card_attempts", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("pledges", "card_attempts")
