"""Comparing the ledger with Stripe and repairing drift, and adopting subscriptions already there.

Repairs are quiet: readers get mail for things as they happen, not for an operator's catch-up.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from billing.db import session_scope, utcnow
from billing.models import Pledge
from billing.stripe_gateway import NotFoundInStripe, StripeReader
from webhooks import ledger, payments
from webhooks.errors import EventRejected, RetryLater
from webhooks.ledger import Context
from webhooks.shapes import timestamp


def sync_subscription(stripe: StripeReader, subscription: dict[str, Any]) -> list[str]:
    """Make the pledge and its payments match Stripe's current subscription and invoices."""
    subscription_id = str(subscription["id"])
    try:
        with session_scope() as session:
            ctx = Context(session, stripe, event_at=utcnow(), notify=False)
            pledge = ledger.pledge_for_subscription(ctx, subscription_id, subscription)
            ledger.apply_subscription_state(ctx, pledge, subscription, ctx.event_at)
            for invoice in stripe.invoices(subscription_id):
                _sync_invoice(ctx, invoice)
            expected = ledger.status_of(subscription, ctx.event_at)
            if expected is not None and expected != pledge.status:
                ctx.changes.append(
                    f"pledge {pledge.id}: left {pledge.status}, Stripe says "
                    f"{subscription.get('status')} (a final status is not reopened)"
                )
            return ctx.changes
    except (EventRejected, RetryLater) as error:
        # One subscription Stripe cannot fully describe (say its customer was deleted) must
        # not stop the repair of all the others.
        return [f"subscription {subscription_id}: skipped, {error}"]


def _sync_invoice(ctx: Context, invoice: dict[str, Any]) -> None:
    status = invoice.get("status")
    transitions = invoice.get("status_transitions") or {}
    if status == "paid":
        paid_at = timestamp(transitions.get("paid_at")) or timestamp(invoice.get("created"))
        payments.record_invoice_paid(ctx, invoice, paid_at or ctx.event_at)
    elif status in ("open", "uncollectible") and int(invoice.get("attempt_count") or 0) > 0:
        created = timestamp(invoice.get("created")) or ctx.event_at
        payments.record_invoice_failed(ctx, invoice, created, None)


def reconcile(stripe: StripeReader, since: datetime | None = None) -> list[str]:
    """Every pledge with a subscription (created since `since`) against Stripe, then the
    subscriptions in Stripe that the ledger has never heard of."""
    query = select(Pledge.stripe_subscription_id).where(Pledge.stripe_subscription_id.is_not(None))
    if since is not None:
        query = query.where(Pledge.created_at >= since)
    with session_scope() as session:
        known = [str(sub_id) for sub_id in session.scalars(query)]
    changes: list[str] = []
    for subscription_id in known:
        try:
            subscription = stripe.subscription(subscription_id)
        except NotFoundInStripe:
            changes.append(f"subscription {subscription_id}: in the ledger, not in Stripe")
            continue
        changes += sync_subscription(stripe, subscription)
    changes += import_subscriptions(stripe, since, skip=set(known))
    return changes


def import_subscriptions(
    stripe: StripeReader, since: datetime | None = None, skip: Iterable[str] = ()
) -> list[str]:
    """Backfill pledges and payments for live subscriptions that exist only in Stripe."""
    skipped, changes = set(skip), []
    for subscription in stripe.subscriptions():
        created = timestamp(subscription.get("created"))
        if subscription["id"] in skipped or (since and created and created < since):
            continue
        if subscription.get("status") in ("canceled", "incomplete_expired"):
            # Only supporters who still give are adopted; ended ones stay history in Stripe.
            continue
        changes += sync_subscription(stripe, subscription)
    return changes
