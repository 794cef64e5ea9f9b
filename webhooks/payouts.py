"""Stripe payouts in the ledger: the payout from its events, its parts read back from Stripe."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from billing.db import utcnow
from billing.models import Payout, PayoutTransaction
from webhooks.errors import EventRejected
from webhooks.ledger import Context
from webhooks.shapes import object_id, timestamp

# A failed or canceled payout's transactions go back to the balance and out in a later payout.
UNPAID_STATUSES = frozenset({"failed", "canceled"})


def record_payout(ctx: Context, payout: dict[str, Any]) -> None:
    """Upsert the payout (never an older status over a newer one), then load its parts."""
    arrival = timestamp(payout.get("arrival_date"))
    created = timestamp(payout.get("created"))
    if arrival is None or created is None or payout.get("amount") is None:
        raise EventRejected(f"payout {payout.get('id')} has no amount, arrival or created date")
    at, now = ctx.event_at, utcnow()
    values: dict[str, Any] = {
        "amount_minor": int(payout["amount"]),
        "currency": str(payout.get("currency") or "").lower(),
        "status": str(payout.get("status")),
        # Stripe's arrival_date is midnight UTC of the day the bank credits the money.
        "arrival_date": arrival.astimezone(UTC).date(),
        "automatic": bool(payout.get("automatic", True)),
        "failure_code": payout.get("failure_code"),
        "stripe_state_at": at,
        "updated_at": now,
    }
    statement = insert(Payout).values(
        stripe_payout_id=str(payout["id"]), stripe_created_at=created, created_at=now, **values
    )
    changed = ctx.session.execute(
        statement.on_conflict_do_update(
            index_elements=["stripe_payout_id"],
            set_=values,
            where=Payout.stripe_state_at <= at,
        ).returning(Payout.id)
    ).first()
    if changed is not None:
        ctx.changes.append(f"payout {payout['id']}: {values['status']} {values['amount_minor']}")
    row = ctx.session.scalars(
        select(Payout).where(Payout.stripe_payout_id == str(payout["id"])).with_for_update()
    ).one()
    load_transactions(ctx, row)


def load_transactions(ctx: Context, payout: Payout) -> None:
    """Replace the payout's balance transactions with Stripe's current list of them."""
    session = ctx.session
    if payout.status in UNPAID_STATUSES or not payout.automatic:
        # Stripe lists the transactions of automatic payouts only; a manual one is explained
        # by hand, and a failed one explains nothing.
        session.execute(delete(PayoutTransaction).where(PayoutTransaction.payout_id == payout.id))
        payout.transactions_loaded_at = None
        return
    seen: list[str] = []
    for transaction in ctx.stripe.payout_transactions(payout.stripe_payout_id):
        values: dict[str, Any] = {
            "payout_id": payout.id,
            "type": str(transaction.get("type")),
            "reporting_category": str(transaction.get("reporting_category") or ""),
            "source_id": object_id(transaction.get("source")),
            "amount_minor": int(transaction["amount"]),
            "fee_minor": int(transaction.get("fee") or 0),
            "net_minor": int(transaction["net"]),
            "currency": str(transaction.get("currency") or payout.currency).lower(),
            "stripe_created_at": timestamp(transaction.get("created")) or utcnow(),
        }
        session.execute(
            insert(PayoutTransaction)
            .values(stripe_balance_transaction_id=str(transaction["id"]), **values)
            .on_conflict_do_update(index_elements=["stripe_balance_transaction_id"], set_=values)
        )
        seen.append(str(transaction["id"]))
    session.execute(
        delete(PayoutTransaction).where(
            PayoutTransaction.payout_id == payout.id,
            PayoutTransaction.stripe_balance_transaction_id.not_in(seen),
        )
    )
    payout.transactions_loaded_at = datetime.now(UTC)
