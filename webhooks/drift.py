"""The drift check: Stripe's recent charges, refunds and disputes against the ledger. Events
the inbox never received are stored and run through the handlers like any other; whatever the
ledger still lacks afterwards is reported, and every run is recorded in `reconcile_runs`."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import session_scope, utcnow
from billing.models import Dispute, Payment, ReconcileRun, Refund, StripeEvent
from billing.settings import get_settings
from billing.stripe_gateway import GatewayError, NotFoundInStripe, StripeReader
from webhooks import processing
from webhooks.handlers import HANDLERS
from webhooks.inbox import InvalidEvent, parse_event, store_event
from webhooks.payments import COUNTED_REFUND_STATUSES
from webhooks.shapes import object_id, timestamp

log = structlog.get_logger()


@dataclass(frozen=True)
class StripeFact:
    """One thing Stripe holds that the ledger should hold too."""

    kind: str  # charge | refund | dispute
    stripe_id: str
    amount: int
    currency: str
    created: int
    status: str
    payment_intent_id: str | None = None

    def describe(self) -> str:
        day = timestamp(self.created)
        return (
            f"{self.kind} {self.stripe_id} ({self.amount} {self.currency}, {self.status}, "
            f"{day:%Y-%m-%d}): "
        )


@dataclass
class DriftResult:
    run_id: int
    checked: int = 0
    missing: int = 0
    replayed: int = 0
    unexplained: list[str] = field(default_factory=list)
    status: str = "running"
    error: str | None = None


def stripe_facts(stripe: StripeReader, since: int) -> list[StripeFact]:
    facts: list[StripeFact] = []
    for charge in stripe.charges_since(since):
        if charge.get("status") == "succeeded" and charge.get("paid", True):
            facts.append(_fact("charge", charge, object_id(charge.get("payment_intent"))))
    for refund in stripe.refunds_since(since):
        if refund.get("status") in COUNTED_REFUND_STATUSES:
            facts.append(_fact("refund", refund))
    for dispute in stripe.disputes_since(since):
        facts.append(_fact("dispute", dispute))
    return facts


def _fact(kind: str, document: dict[str, Any], intent: str | None = None) -> StripeFact:
    return StripeFact(
        kind, str(document["id"]), int(document.get("amount") or 0),
        str(document.get("currency") or "").lower(), int(document.get("created") or 0),
        str(document.get("status")), intent,
    )  # fmt: skip


def unexplained(session: Session, facts: Iterable[StripeFact]) -> list[str]:
    """What the ledger lacks or holds differently, one sentence per Stripe object."""
    found: list[str] = []
    for fact in facts:
        problem = _compare(session, fact)
        if problem:
            found.append(fact.describe() + problem)
    return found


def _compare(session: Session, fact: StripeFact) -> str | None:
    if fact.kind == "charge":
        payment = session.scalars(
            select(Payment).where(Payment.stripe_charge_id == fact.stripe_id)
        ).first()
        if payment is None and fact.payment_intent_id:
            payment = session.scalars(
                select(Payment).where(Payment.stripe_payment_intent_id == fact.payment_intent_id)
            ).first()
        if payment is None:
            return "not in the ledger"
        if payment.status not in ("paid", "refunded") or payment.amount_minor != fact.amount:
            return f"the ledger holds payment {payment.id}, {payment.status} {payment.amount_minor}"
        return None
    if fact.kind == "refund":
        refund = session.scalars(
            select(Refund).where(Refund.stripe_refund_id == fact.stripe_id)
        ).first()
        if refund is None:
            return "not in the ledger"
        if refund.amount_minor != fact.amount or refund.status != fact.status:
            return f"the ledger holds {refund.status} {refund.amount_minor}"
        return None
    dispute = session.scalars(
        select(Dispute).where(Dispute.stripe_dispute_id == fact.stripe_id)
    ).first()
    if dispute is None:
        return "not in the ledger"
    if dispute.status != fact.status:
        return f"the ledger holds status {dispute.status}"
    return None


def replay_missed_events(stripe: StripeReader, since: int, *, livemode: bool) -> list[str]:
    """Store the events of the window the inbox never received, then run them, oldest first."""
    events = [event for event in stripe.events_since(since) if event.get("type") in HANDLERS]
    events.sort(key=lambda event: (int(event.get("created") or 0), str(event.get("id"))))
    with session_scope() as session:
        known = set(
            session.scalars(
                select(StripeEvent.stripe_event_id).where(
                    StripeEvent.stripe_event_id.in_([str(event.get("id")) for event in events])
                )
            )
        )
    replayed: list[str] = []
    for document in events:
        if document.get("id") in known:
            continue
        try:
            event = parse_event(orjson.dumps(document))
        except InvalidEvent as error:
            log.warning("drift_event_unusable", event=document.get("id"), error=str(error))
            continue
        with session_scope() as session:
            stored = store_event(session, event, livemode=livemode)
        # Quiet, as every repair is: readers hear about things as they happen. The worker's
        # copy of the task finds the event handled and does nothing.
        outcome = processing.process(stored.event_id, stripe, notify=False)
        replayed.append(f"{event['id']} {event['type']}: {outcome.status}")
    return replayed


def livemode() -> bool:
    key = get_settings().stripe_api_key.get_secret_value()
    return key.startswith(("sk_live_", "rk_live_"))


def check_drift(stripe: StripeReader, *, days: int) -> DriftResult:
    """Compare, replay what was missed, compare again; the run is stored whatever happens."""
    started = utcnow()
    with session_scope() as session:
        run = ReconcileRun(
            started_at=started, days=days, checked=0, missing=0, replayed=0, unexplained=[],
            status="running",
        )  # fmt: skip
        session.add(run)
        session.flush()
        result = DriftResult(run_id=run.id)
    since = int((started - timedelta(days=days)).timestamp())
    try:
        facts = stripe_facts(stripe, since)
        with session_scope() as session:
            before = unexplained(session, facts)
        replayed = replay_missed_events(stripe, since, livemode=livemode())
        with session_scope() as session:
            after = unexplained(session, facts) if replayed else before
        result.checked, result.missing, result.replayed = len(facts), len(before), len(replayed)
        result.unexplained = after
        result.status = "drift" if after else "matches"
    except (GatewayError, NotFoundInStripe, *processing.TRANSIENT_ERRORS) as error:
        result.status, result.error = "failed", f"{type(error).__name__}: {error}"
    with session_scope() as session:
        stored = session.get(ReconcileRun, result.run_id)
        assert stored is not None
        stored.finished_at = utcnow()
        stored.checked, stored.missing, stored.replayed = (
            result.checked, result.missing, result.replayed,
        )  # fmt: skip
        stored.unexplained, stored.status, stored.error = (
            result.unexplained, result.status, result.error,
        )  # fmt: skip
    log.info("drift_checked", status=result.status, missing=result.missing,
             replayed=result.replayed, unexplained=len(result.unexplained))  # fmt: skip
    return result
