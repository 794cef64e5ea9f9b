"""The figures an operator watches, read from the database (the same for every process)."""

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Backlog:
    inbox_by_status: dict[str, int]
    inbox_oldest_pending_seconds: float
    outbox_by_status: dict[str, int]
    outbox_oldest_unsent_seconds: float
    pledges_by_status: dict[str, int]


def _counts(session: Session, table: str) -> dict[str, int]:
    rows = session.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY status"))  # noqa: S608  (a fixed table name)
    return {str(status): int(number) for status, number in rows}


def _oldest_seconds(session: Session, query: str) -> float:
    age = session.scalar(text(query))
    return float(age or 0.0)


def read_backlog(session: Session) -> Backlog:
    return Backlog(
        inbox_by_status=_counts(session, "stripe_events"),
        inbox_oldest_pending_seconds=_oldest_seconds(
            session,
            "SELECT extract(epoch FROM now() - min(received_at)) FROM stripe_events "
            "WHERE status = 'pending'",
        ),
        outbox_by_status=_counts(session, "email_outbox"),
        # Unsent: waiting or being sent, counted from when it was queued.
        outbox_oldest_unsent_seconds=_oldest_seconds(
            session,
            "SELECT extract(epoch FROM now() - min(created_at)) FROM email_outbox "
            "WHERE status IN ('pending', 'sending')",
        ),
        pledges_by_status=_counts(session, "pledges"),
    )
