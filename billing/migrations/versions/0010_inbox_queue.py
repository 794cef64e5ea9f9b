"""The inbox is the work queue: when a retried event is next due, and a pending-only index.

Revision ID: 0010_inbox_queue
Revises: 0009_payouts
Create Date: 2026-11-29 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_inbox_queue"
down_revision: str | None = "0009_payouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stripe_events", sa.Column("run_after", sa.DateTime(timezone=True)))
    # Workers claim the oldest pending rows many times a second; handled rows (nearly all of
    # them, forever) stay out of this index.
    op.create_index(
        "ix_stripe_events_pending", "stripe_events", ["id"],
        postgresql_where=sa.text("status = 'pending'"),
    )  # fmt: skip
    op.create_index(
        "ix_email_outbox_due", "email_outbox", ["send_after"],
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_email_outbox_due", table_name="email_outbox")
    op.drop_index("ix_stripe_events_pending", table_name="stripe_events")
    op.drop_column("stripe_events", "run_after")
