"""Turning a paid one-time gift into a monthly pledge on the gift's saved card, exactly once.

The gift's row is locked while the monthly pledge is made, and `upgraded_from_pledge_id` is
unique, so a double click or a link opened twice makes one pledge. The card is charged
off-session, like every renewal; a bank that asks for 3-D Secure gets the widget's
`handleNextAction` step, and `finish` completes it as `/v1/pledges/{id}/confirm` with `{}` does.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.i18n import Message
from billing.manage.service import ManageError
from billing.models import Pledge, PledgeInterval, PledgeStatus, Reader
from billing.money import fee_cover_minor, minor_per_major, to_minor
from billing.pledges.service import check_amount, confirm_pledge
from billing.settings import Settings
from billing.stripe_gateway import StripeGateway

SOURCE = "upgrade"


@dataclass(frozen=True)
class Started:
    pledge: Pledge
    client_secret: str | None = None


def suggested_minor(settings: Settings, gift: Pledge) -> int:
    """A quarter of the gift, rounded half up to a whole unit, never below the minimum."""
    unit = minor_per_major(gift.currency)
    quarter_units = (gift.amount_minor + 2 * unit) // (4 * unit)
    return max(quarter_units * unit, to_minor(settings.min_amount, gift.currency))


def is_upgradable(gift: Pledge) -> bool:
    return gift.interval == PledgeInterval.ONCE and gift.status == PledgeStatus.ACTIVE


def upgrade_of(session: Session, gift: Pledge) -> Pledge | None:
    return session.scalars(
        select(Pledge)
        .where(Pledge.upgraded_from_pledge_id == gift.id)
        .execution_options(populate_existing=True)
    ).one_or_none()


def start_monthly(
    session: Session,
    gateway: StripeGateway,
    settings: Settings,
    *,
    gift: Pledge,
    reader: Reader,
    amount_minor: int,
) -> Started:
    """The monthly pledge for `gift` (locked by the caller); the existing one if it was made."""
    existing = upgrade_of(session, gift)
    if existing is not None:
        return Started(existing)
    if not is_upgradable(gift):
        raise ManageError(Message("Only a paid one-time gift can be made monthly."))
    currency = check_amount(settings, amount_minor, gift.currency)
    card = gift.stripe_payment_method_id
    if card is None and gift.stripe_payment_intent_id:
        card = gateway.payment_intent_card(gift.stripe_payment_intent_id)
    if card is None or gift.stripe_customer_id is None:
        raise ManageError(
            Message("We no longer hold the card of this gift. Please pledge on our site.")
        )
    fee = (
        fee_cover_minor(amount_minor, settings.card_fee_basis_points, settings.card_fee_fixed_minor)
        if gift.cover_fees
        else 0
    )
    pledge = Pledge(
        id=uuid.uuid4(), reader_id=reader.id, amount_minor=amount_minor, fee_cover_minor=fee,
        currency=currency, interval=PledgeInterval.MONTH, status=PledgeStatus.PENDING,
        cover_fees=gift.cover_fees, locale=gift.locale, source=SOURCE, campaign=gift.campaign,
        article_url=gift.article_url, stripe_customer_id=gift.stripe_customer_id,
        stripe_payment_method_id=card, card_exp_month=gift.card_exp_month,
        card_exp_year=gift.card_exp_year, upgraded_from_pledge_id=gift.id, card_attempts=1,
    )  # fmt: skip
    session.add(pledge)
    session.flush()
    outgoing.pledge_created(session, pledge=pledge)
    pledge.stripe_plan_id = gateway.ensure_plan(
        amount_minor=pledge.charged_minor, currency=currency, interval=PledgeInterval.MONTH
    )
    # The gift's own card pays it (its default_payment_method), never the customer's default.
    outcome = gateway.start_subscription(
        customer_id=gift.stripe_customer_id, plan_id=pledge.stripe_plan_id,
        payment_method_id=card, pledge_id=str(pledge.id),
    )  # fmt: skip
    pledge.stripe_subscription_id = outcome.stripe_id or None
    if outcome.status == "active":
        pledge.status, pledge.activated_at = PledgeStatus.ACTIVE, utcnow()
    elif outcome.status == "failed":
        _fail(gateway, pledge, outcome.failure_reason)
    outgoing.pledge_moved(session, pledge=pledge, previous_status=PledgeStatus.PENDING)
    return Started(pledge, outcome.client_secret if outcome.status == "requires_action" else None)


def finish(session: Session, gateway: StripeGateway, *, gift: Pledge) -> Pledge:
    """After the bank's 3-D Secure step: the subscription's state decides, as for the widget."""
    pledge = upgrade_of(session, gift)
    if pledge is None:
        raise ManageError(Message("There is no monthly pledge to confirm yet."), 404)
    if pledge.status == PledgeStatus.PENDING:
        confirmed = confirm_pledge(session, gateway, str(pledge.id), None)
        if confirmed.status == "failed":
            _fail(gateway, pledge, confirmed.reason)
            outgoing.pledge_moved(session, pledge=pledge, previous_status=PledgeStatus.PENDING)
    return pledge


def _fail(gateway: StripeGateway, pledge: Pledge, reason: str | None) -> None:
    """A card that cannot pay ends this upgrade; its link then says so instead of trying again."""
    if pledge.stripe_subscription_id:
        gateway.cancel_subscription(pledge.stripe_subscription_id)
    pledge.status, pledge.failure_reason = PledgeStatus.FAILED, reason
