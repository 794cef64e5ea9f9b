"""What a reader may do to a pledge from the manage page: Stripe, then the ledger, then a mail."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.i18n import Message
from billing.manage import mails
from billing.models import Payment, Pledge, PledgeInterval, PledgeStatus, Reader
from billing.money import fee_cover_minor
from billing.pledges.service import AUTHENTICATION_FAILED, check_amount
from billing.settings import Settings
from billing.stripe_gateway import CardDeclined, CardInfo, SetupIntentState, StripeGateway

# Statuses in which a subscription still runs and can be changed, paused or ended.
RUNNING = frozenset({PledgeStatus.ACTIVE, PledgeStatus.PAST_DUE, PledgeStatus.PAUSED})
PAUSE_DAYS = 30


class ManageError(Exception):
    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def find(
    session: Session, pledge_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Pledge, Reader] | None:
    """The pledge and its reader; None when either is gone or the reader was erased."""
    pledge = session.get(Pledge, pledge_id, with_for_update=for_update)
    if pledge is None:
        return None
    reader = session.get(Reader, pledge.reader_id)
    if reader is None or reader.erased_at is not None:
        return None
    return pledge, reader


def payments_of(session: Session, pledge: Pledge) -> list[Payment]:
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.pledge_id == pledge.id)
            .order_by(Payment.created_at.desc())
        )
    )


def is_running_subscription(pledge: Pledge) -> bool:
    return (
        pledge.interval != PledgeInterval.ONCE
        and pledge.status in RUNNING
        and pledge.stripe_subscription_id is not None
    )


def require_running(pledge: Pledge) -> str:
    if not is_running_subscription(pledge) or pledge.stripe_subscription_id is None:
        raise ManageError(Message("This pledge is not running any more, so it cannot be changed."))
    return pledge.stripe_subscription_id


def change_amount(
    session: Session,
    gateway: StripeGateway,
    settings: Settings,
    *,
    pledge: Pledge,
    reader: Reader,
    amount_minor: int,
    interval: str,
) -> bool:
    """Switch to the Plan for the new amount and interval; False when nothing changes."""
    subscription_id = require_running(pledge)
    if interval not in (PledgeInterval.MONTH, PledgeInterval.YEAR):
        raise ManageError(Message("Choose monthly or yearly."), 422)
    currency = check_amount(settings, amount_minor, pledge.currency)
    if (amount_minor, interval) == (pledge.amount_minor, pledge.interval):
        return False
    fee = (
        fee_cover_minor(amount_minor, settings.card_fee_basis_points, settings.card_fee_fixed_minor)
        if pledge.cover_fees
        else 0
    )
    plan_id = gateway.ensure_plan(
        amount_minor=amount_minor + fee, currency=currency, interval=interval
    )
    change_id = mails.new_change_id()
    gateway.switch_plan(subscription_id=subscription_id, plan_id=plan_id, change_id=change_id)
    old_amount, old_interval = pledge.charged_minor, pledge.interval
    pledge.amount_minor, pledge.fee_cover_minor, pledge.interval = amount_minor, fee, interval
    pledge.stripe_plan_id = plan_id
    session.flush()
    outgoing.pledge_amount_changed(
        session, pledge=pledge, previous_total_amount=old_amount, previous_interval=old_interval
    )
    mails.amount_changed(
        session, reader=reader, pledge=pledge, old_amount_minor=old_amount,
        old_interval=old_interval, change_id=change_id,
    )  # fmt: skip
    return True


def cancel(
    session: Session, gateway: StripeGateway, *, pledge: Pledge, reader: Reader, reason: str | None
) -> None:
    """End the subscription now; cancelling twice changes nothing and mails once."""
    if pledge.status == PledgeStatus.CANCELED:
        return
    subscription_id = require_running(pledge)
    gateway.cancel_subscription(subscription_id)
    previous_status = pledge.status
    pledge.status = PledgeStatus.CANCELED
    pledge.canceled_at = utcnow()
    pledge.cancel_reason = (reason or "").strip()[:1000] or None
    session.flush()
    outgoing.pledge_moved(session, pledge=pledge, previous_status=previous_status)
    notifications.pledge_canceled(
        session, reader=reader, pledge=pledge, after_failed_payments=False
    )


def pause(
    session: Session,
    gateway: StripeGateway,
    *,
    pledge: Pledge,
    reader: Reader,
    resumes_at: datetime | None = None,
) -> None:
    """No payments until `resumes_at` (a month by default); Stripe resumes collection by itself
    then, and the ledger follows (webhooks.ledger.status_of, workers.pauses)."""
    subscription_id = require_running(pledge)
    if pledge.status != PledgeStatus.ACTIVE:
        raise ManageError(Message("Only an active pledge can be paused."))
    resumes_at = resumes_at or utcnow() + timedelta(days=PAUSE_DAYS)
    gateway.pause_collection(
        subscription_id=subscription_id, resumes_at=int(resumes_at.timestamp())
    )
    pledge.status = PledgeStatus.PAUSED
    pledge.resumes_at = resumes_at
    session.flush()
    outgoing.pledge_moved(session, pledge=pledge, previous_status=PledgeStatus.ACTIVE)
    mails.paused(session, reader=reader, pledge=pledge, resumes_at=resumes_at)


def update_card(
    session: Session, gateway: StripeGateway, *, pledge: Pledge, reader: Reader, card: CardInfo
) -> SetupIntentState:
    """Try the reader's new card for this pledge; done at once unless 3-D Secure is asked.

    The server confirms the card itself, so the manage page never holds a secret that could
    confirm another card. A declined card raises CardDeclined.
    """
    require_running(pledge)
    if pledge.stripe_customer_id is None:
        raise ManageError(Message("This pledge has no card to replace."))
    if card.customer_id not in (None, pledge.stripe_customer_id):
        raise ManageError(Message("This card cannot be used here. Please enter it again."))
    state = gateway.confirm_setup(
        customer_id=pledge.stripe_customer_id, payment_method_id=card.id,
        pledge_id=str(pledge.id), purpose="card_update",
    )  # fmt: skip
    if state.status == "succeeded":
        finish_card_update(session, gateway, pledge=pledge, reader=reader, setup_intent_id=state.id)
    return state


def finish_card_update(
    session: Session,
    gateway: StripeGateway,
    *,
    pledge: Pledge,
    reader: Reader,
    setup_intent_id: str,
) -> None:
    """Make the confirmed card the one this pledge's payments use; repeating it mails once."""
    subscription_id = require_running(pledge)
    customer_id, owner_pledge_id = gateway.setup_intent_owner(setup_intent_id)
    if (
        customer_id is None
        or customer_id != pledge.stripe_customer_id
        or owner_pledge_id != str(pledge.id)
    ):
        raise ManageError(Message("This card update does not belong to this pledge."), 404)
    state = gateway.retrieve_setup_intent(setup_intent_id)
    if state.status == "requires_action":
        raise ManageError(Message("Please confirm the new card with your bank first."))
    if not state.card_ready or state.payment_method_id is None:
        # Ended so its 3-D Secure secret confirms nothing more.
        gateway.cancel_setup_intent(setup_intent_id)
        raise CardDeclined(
            AUTHENTICATION_FAILED,
            f"setup_{state.status}",
        )
    gateway.attach_card(customer_id=customer_id, payment_method_id=state.payment_method_id)
    gateway.pay_subscription_with(
        subscription_id=subscription_id, payment_method_id=state.payment_method_id
    )
    card = gateway.card_summary(state.payment_method_id)
    pledge.stripe_payment_method_id = state.payment_method_id
    pledge.card_exp_month, pledge.card_exp_year = card.exp_month, card.exp_year
    mails.card_updated(
        session, reader=reader, pledge=pledge, payment_method_id=state.payment_method_id,
        brand=card.brand, last4=card.last4,
    )  # fmt: skip


LINKABLE = (PledgeStatus.ACTIVE, PledgeStatus.PAST_DUE, PledgeStatus.PAUSED, PledgeStatus.CANCELED)


def request_links(session: Session, email: str) -> None:
    """Mail manage links to `email` if it has pledges; the caller answers the same either way."""
    reader = session.scalars(
        select(Reader).where(Reader.email == email.strip().lower(), Reader.erased_at.is_(None))
    ).one_or_none()
    if reader is None:
        return
    pledges = list(
        session.scalars(
            select(Pledge)
            .where(Pledge.reader_id == reader.id, Pledge.status.in_(LINKABLE))
            .order_by(Pledge.created_at.desc())
        )
    )
    if pledges:
        mails.manage_links(
            session, reader=reader, pledges=pledges, window=utcnow().strftime("%Y%m%d%H")
        )
