"""The database keeps the reports' history and revenue rollup whoever writes the ledger."""

import uuid
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from billing.db import Base, get_engine
from billing.models import Payment, Pledge, PledgeHistory, Reader

RAW_REVENUE = """
SELECT currency, count(*), sum(amount_minor), coalesce(sum(fee_minor), 0),
       count(*) FILTER (WHERE fee_minor IS NULL)
  FROM payments WHERE paid_at IS NOT NULL AND status IN ('paid', 'refunded')
 GROUP BY currency ORDER BY currency
"""
ROLLUP_REVENUE = """
SELECT currency, sum(payments), sum(gross_minor), sum(fees_minor), sum(fees_unknown_payments)
  FROM revenue_rollup GROUP BY currency HAVING sum(payments) <> 0 ORDER BY currency
"""


def _pledge(db: Session) -> Pledge:
    reader = Reader(id=uuid.uuid4(), email=f"{uuid.uuid4().hex}@example.org")
    db.add(reader)
    db.flush()
    pledge = Pledge(
        id=uuid.uuid4(), reader_id=reader.id, amount_minor=500, currency="eur",
        interval="month", status="pending",
    )  # fmt: skip
    db.add(pledge)
    db.flush()
    return pledge


def revenue_matches_payments(db: Session) -> list[tuple[object, ...]]:
    raw = [tuple(row) for row in db.execute(text(RAW_REVENUE))]
    assert [tuple(row) for row in db.execute(text(ROLLUP_REVENUE))] == raw
    return raw


def test_revenue_rollup_follows_every_change_to_a_payment(db: Session) -> None:
    pledge = _pledge(db)
    payment = Payment(pledge_id=pledge.id, status="pending", amount_minor=500, currency="eur")
    db.add(payment)
    db.flush()
    assert revenue_matches_payments(db) == []

    payment.status, payment.paid_at = "paid", datetime(2026, 10, 3, 23, 59, tzinfo=UTC)
    db.flush()
    assert revenue_matches_payments(db) == [("eur", 1, 500, 0, 1)]

    payment.fee_minor = 45
    db.flush()
    assert revenue_matches_payments(db) == [("eur", 1, 500, 45, 0)]

    payment.status = "refunded"
    db.flush()
    assert revenue_matches_payments(db) == [("eur", 1, 500, 45, 0)]

    db.execute(update(Payment).where(Payment.id == payment.id).values(amount_minor=700))
    assert revenue_matches_payments(db) == [("eur", 1, 700, 45, 0)]

    db.execute(delete(Payment).where(Payment.id == payment.id))
    assert revenue_matches_payments(db) == []


def test_history_records_a_change_made_with_plain_sql(db: Session) -> None:
    pledge = _pledge(db)
    created = pledge.updated_at
    when = datetime(2026, 10, 1, tzinfo=UTC)

    db.execute(
        text("UPDATE pledges SET status = 'active', updated_at = :when WHERE id = :id"),
        {"when": when, "id": pledge.id},
    )
    db.execute(
        text("UPDATE pledges SET updated_at = :later WHERE id = :id"),
        {"later": datetime(2026, 10, 2, tzinfo=UTC), "id": pledge.id},
    )

    rows = db.execute(
        select(PledgeHistory.status, PledgeHistory.previous_status, PledgeHistory.mrr_delta_minor,
               PledgeHistory.movement, PledgeHistory.changed_at)
        .where(PledgeHistory.pledge_id == pledge.id)
        .order_by(PledgeHistory.id)
    ).all()  # fmt: skip
    # Creation, then activation; a change that moves nothing a report reads is not recorded.
    assert [tuple(row) for row in rows] == [
        ("pending", None, 0, None, created),
        ("active", "pending", 500, "new", when),
    ]


def test_models_and_migrations_agree(db: Session) -> None:
    with get_engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []
