"""`pledges dev --demo`: a seeded year of signed Stripe events, applied by the real handlers."""

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.models import Payment, Pledge, Reader, Refund, StripeEvent
from webhooks.demo import build_timeline, post_year


def _ledger(db: Session) -> dict[str, object]:
    db.expire_all()
    return {
        "readers": db.scalar(select(func.count()).select_from(Reader)),
        "pledges": dict(
            db.execute(select(Pledge.status, func.count()).group_by(Pledge.status)).all()
        ),
        "payments": dict(
            db.execute(select(Payment.status, func.count()).group_by(Payment.status)).all()
        ),
        "refunds": db.scalar(select(func.count()).select_from(Refund)),
        "currencies": set(db.scalars(select(Payment.currency).distinct())),
    }


def test_the_same_seed_builds_the_same_year() -> None:
    first = build_timeline(5, 20, now=1_790_000_000)
    again = build_timeline(5, 20, now=1_790_000_000)
    other = build_timeline(6, 20, now=1_790_000_000)

    assert first == again
    assert first != other


def test_demo_year_lands_in_the_ledger_through_the_handlers_once(
    client: TestClient, db: Session
) -> None:
    counts = post_year(client, seed=11, readers=12)
    ledger = _ledger(db)

    assert ledger["readers"] == 12
    assert sum(ledger["pledges"].values()) == 12  # type: ignore[attr-defined]
    paid = sum(n for name, n in counts.items() if name.startswith(("paid ", "recovered ")))
    assert ledger["payments"].get("paid", 0) + ledger["payments"].get("refunded", 0) == paid  # type: ignore[attr-defined]
    assert ledger["refunds"] == sum(n for name, n in counts.items() if name.startswith("refunds"))
    assert ledger["currencies"] <= {"eur", "usd"}
    assert db.scalar(select(func.count()).where(StripeEvent.status != "handled")) == 0

    post_year(client, seed=11, readers=12)

    assert _ledger(db) == ledger
