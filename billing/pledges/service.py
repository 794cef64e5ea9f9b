"""Creating and confirming pledges: validation, the reader, the Stripe objects, the ledger row."""

import hashlib
import uuid
from typing import Any

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from billing.abuse.limiter import MAX_CARDS_PER_PLEDGE
from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.i18n import Amount, Message, language_of
from billing.models import Pledge, PledgeInterval, PledgeStatus, Reader
from billing.money import fee_cover_minor, to_minor
from billing.pledges.schemas import PledgeConfirmed, PledgeCreate, PledgeCreated
from billing.reader_links import upgrade_link
from billing.settings import Settings
from billing.stripe_gateway import (
    CardDeclined,
    CardInfo,
    ChargeOutcome,
    SetupIntentState,
    StripeGateway,
)

log = structlog.get_logger()


class PledgeError(Exception):
    status_code = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidPledge(PledgeError):
    status_code = 422


class PledgeNotFound(PledgeError):
    status_code = 404


class PledgeConflict(PledgeError):
    status_code = 409


class TooManyCards(PledgeError):
    status_code = 429


TOO_MANY_CARDS = Message("Too many cards were tried for this pledge. Please start again later.")
AUTHENTICATION_FAILED = Message(
    "Your bank could not confirm the payment. Please try again or use another card."
)


def check_amount(settings: Settings, amount: int, currency: str) -> str:
    """The lower-cased currency, or InvalidPledge with a message the reader can act on."""
    code = currency.lower()
    if code not in settings.currencies:
        choices = ", ".join(c.upper() for c in settings.currencies)
        raise InvalidPledge(
            Message(
                "%(currency)s is not a currency we accept. Choose one of %(choices)s.",
                currency=currency.upper(),
                choices=choices,
            ),
            "currency",
        )
    minimum = to_minor(settings.min_amount, code)
    maximum = to_minor(settings.max_amount, code)
    if amount < minimum:
        raise InvalidPledge(
            Message("The smallest pledge is %(amount)s.", amount=Amount(minimum, code)), "amount"
        )
    if amount > maximum:
        raise InvalidPledge(
            Message(
                "The largest pledge we can take online is %(amount)s.",
                amount=Amount(maximum, code),
            ),
            "amount",
        )
    return code


def create_pledge(
    session: Session,
    gateway: StripeGateway,
    settings: Settings,
    request: PledgeCreate,
    idempotency_key: str | None,
) -> PledgeCreated:
    currency = check_amount(settings, request.amount, request.currency)
    # Stored as an enabled language, so every later mail and page agrees on it.
    request = request.model_copy(update={"locale": language_of(request.locale, settings.languages)})
    fingerprint = _fingerprint(request)
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, idempotency_key)
        if existing is not None:
            return _replay(settings, existing, fingerprint)

    reader = _get_or_create_reader(session, request)
    if reader.stripe_customer_id is None:
        # Before the pledge row, so that row is written once, with its customer. Two requests
        # for one new reader meet at the reader's row (the second waits for the first to
        # commit); Stripe's idempotency key gives both the same customer otherwise.
        reader.stripe_customer_id = gateway.create_customer(
            email=reader.email, name=reader.name, locale=reader.locale, reader_id=str(reader.id)
        )
    fee = (
        fee_cover_minor(
            request.amount, settings.card_fee_basis_points, settings.card_fee_fixed_minor
        )
        if request.cover_fees
        else 0
    )
    pledge = Pledge(
        id=uuid.uuid4(),
        reader_id=reader.id,
        amount_minor=request.amount,
        fee_cover_minor=fee,
        currency=currency,
        interval=request.interval,
        status=PledgeStatus.PENDING,
        cover_fees=request.cover_fees,
        locale=request.locale,
        source=request.source,
        campaign=request.campaign,
        article_url=request.article_url,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        stripe_customer_id=reader.stripe_customer_id,
    )
    session.add(pledge)
    try:
        # A concurrent request with the same key waits here on the unique index, then loses.
        session.flush()
    except IntegrityError:
        session.rollback()
        existing = _by_idempotency_key(session, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(settings, existing, fingerprint)

    outgoing.pledge_created(session, pledge=pledge)
    log.info(
        "pledge_created", pledge_id=str(pledge.id), amount_minor=pledge.amount_minor,
        currency=currency, interval=pledge.interval, campaign=pledge.campaign,
    )  # fmt: skip
    return _created(settings, pledge)


def find_pending(session: Session, pledge_id: str) -> Pledge | None:
    """The pledge a confirm is about, locked, or None when it is unknown."""
    try:
        key = uuid.UUID(pledge_id)
    except ValueError:
        return None
    # The row lock makes a double-clicked confirm wait for the first instead of racing it; the
    # row is read afresh, whatever this session read of it before.
    return session.get(Pledge, key, with_for_update=True, populate_existing=True)


def confirm_pledge(
    session: Session, gateway: StripeGateway, pledge_id: str, card: CardInfo | None
) -> PledgeConfirmed:
    """Try the reader's card (`card`), or finish the attempt after 3-D Secure (`card=None`)."""
    pledge = find_pending(session, pledge_id)
    if pledge is None:
        raise PledgeNotFound(Message("No pledge with this id."))
    if pledge.status != PledgeStatus.PENDING:
        return _confirmed(pledge)
    if pledge.stripe_customer_id is None:
        raise PledgeConflict(
            Message("This pledge was never set up with Stripe; please start again.")
        )

    try:
        outcome = _try_card(gateway, pledge, card) if card else _resume(gateway, pledge)
    except CardDeclined as declined:
        outcome = ChargeOutcome("failed", "", failure_reason=declined.reason,
                                failure_code=declined.code)  # fmt: skip
    confirmed = _apply_outcome(gateway, pledge, outcome)
    outgoing.pledge_moved(session, pledge=pledge, previous_status=PledgeStatus.PENDING)
    return confirmed


def _try_card(gateway: StripeGateway, pledge: Pledge, card: CardInfo) -> ChargeOutcome:
    if pledge.card_attempts >= MAX_CARDS_PER_PLEDGE:
        raise TooManyCards(TOO_MANY_CARDS)
    assert pledge.stripe_customer_id is not None
    if card.customer_id not in (None, pledge.stripe_customer_id):
        raise InvalidPledge(Message("This card cannot be used here. Please enter it again."))
    pledge.card_attempts += 1
    # Kept for the expiry warning; a card tried later on this pledge replaces it.
    pledge.stripe_payment_method_id = card.id
    pledge.card_exp_month, pledge.card_exp_year = card.exp_month, card.exp_year
    # A card tried before on this pledge is over: its subscription or payment is not reused.
    pledge.stripe_subscription_id = None
    pledge.stripe_payment_intent_id = None
    setup = gateway.confirm_setup(
        customer_id=pledge.stripe_customer_id, payment_method_id=card.id,
        pledge_id=str(pledge.id), purpose="pledge",
    )  # fmt: skip
    pledge.stripe_setup_intent_id = setup.id
    return _after_setup(gateway, pledge, setup)


def _resume(gateway: StripeGateway, pledge: Pledge) -> ChargeOutcome:
    if pledge.stripe_subscription_id:
        return gateway.subscription_outcome(pledge.stripe_subscription_id)
    if pledge.stripe_payment_intent_id:
        return gateway.payment_intent_outcome(pledge.stripe_payment_intent_id)
    if pledge.stripe_setup_intent_id is None:
        raise PledgeConflict(Message("Enter the card details first."))
    setup = gateway.retrieve_setup_intent(pledge.stripe_setup_intent_id)
    return _after_setup(gateway, pledge, setup)


def _after_setup(gateway: StripeGateway, pledge: Pledge, setup: SetupIntentState) -> ChargeOutcome:
    if setup.status == "requires_action":
        return ChargeOutcome("requires_action", setup.id, client_secret=setup.client_secret)
    if not setup.card_ready:
        return ChargeOutcome(
            "failed", setup.id, failure_reason=AUTHENTICATION_FAILED,
            failure_code=f"setup_{setup.status}",
        )  # fmt: skip
    assert setup.payment_method_id is not None
    return _charge(gateway, pledge, setup.payment_method_id)


def _charge(gateway: StripeGateway, pledge: Pledge, payment_method_id: str) -> ChargeOutcome:
    assert pledge.stripe_customer_id is not None
    gateway.attach_card(customer_id=pledge.stripe_customer_id, payment_method_id=payment_method_id)
    if pledge.interval == PledgeInterval.ONCE:
        outcome = gateway.charge_once(
            customer_id=pledge.stripe_customer_id,
            payment_method_id=payment_method_id,
            amount_minor=pledge.charged_minor,
            currency=pledge.currency,
            pledge_id=str(pledge.id),
        )
        pledge.stripe_payment_intent_id = outcome.stripe_id or None
        return outcome
    pledge.stripe_plan_id = gateway.ensure_plan(
        amount_minor=pledge.charged_minor, currency=pledge.currency, interval=pledge.interval
    )
    outcome = gateway.start_subscription(
        customer_id=pledge.stripe_customer_id,
        plan_id=pledge.stripe_plan_id,
        payment_method_id=payment_method_id,
        pledge_id=str(pledge.id),
    )
    pledge.stripe_subscription_id = outcome.stripe_id
    return outcome


def _apply_outcome(
    gateway: StripeGateway, pledge: Pledge, outcome: ChargeOutcome
) -> PledgeConfirmed:
    log.info(
        "pledge_confirm", pledge_id=str(pledge.id), outcome=outcome.status,
        failure_code=outcome.failure_code,
    )  # fmt: skip
    if outcome.status == "active":
        pledge.status = PledgeStatus.ACTIVE
        pledge.activated_at = pledge.activated_at or utcnow()
    elif outcome.status == "failed":
        _end_failed_attempt(gateway, pledge)
        pledge.failure_reason = outcome.failure_reason
        cards_left = MAX_CARDS_PER_PLEDGE - pledge.card_attempts
        if cards_left <= 0:
            pledge.status = PledgeStatus.FAILED
        return PledgeConfirmed(
            id=pledge.id, status="failed", reason=outcome.failure_reason,
            cards_left=max(cards_left, 0),
        )  # fmt: skip
    else:
        return PledgeConfirmed(
            id=pledge.id, status="requires_action", client_secret=outcome.client_secret
        )
    return _confirmed(pledge)


def _end_failed_attempt(gateway: StripeGateway, pledge: Pledge) -> None:
    """End every Stripe object of a failed card, so no secret handed out can confirm it later."""
    if pledge.stripe_subscription_id:
        # An incomplete subscription would otherwise linger in Stripe for a day.
        gateway.cancel_subscription(pledge.stripe_subscription_id)
        pledge.stripe_subscription_id = None
    if pledge.stripe_payment_intent_id:
        gateway.cancel_payment_intent(pledge.stripe_payment_intent_id)
        pledge.stripe_payment_intent_id = None
    if pledge.stripe_setup_intent_id:
        gateway.cancel_setup_intent(pledge.stripe_setup_intent_id)
        pledge.stripe_setup_intent_id = None


def _confirmed(pledge: Pledge) -> PledgeConfirmed:
    failed = pledge.status == PledgeStatus.FAILED
    gift_paid = pledge.interval == PledgeInterval.ONCE and pledge.status == PledgeStatus.ACTIVE
    return PledgeConfirmed(
        id=pledge.id,
        status=pledge.status,
        reason=pledge.failure_reason if failed else None,
        cards_left=0 if failed else None,
        upgrade_url=upgrade_link(pledge.id) if gift_paid else None,
    )


def _created(settings: Settings, pledge: Pledge) -> PledgeCreated:
    return PledgeCreated(
        id=pledge.id,
        status=pledge.status,
        publishable_key=settings.stripe_publishable_key,
        amount=pledge.amount_minor,
        fee_cover=pledge.fee_cover_minor,
        total_amount=pledge.charged_minor,
        currency=pledge.currency,
        interval=pledge.interval,
    )


def _replay(settings: Settings, pledge: Pledge, fingerprint: str) -> PledgeCreated:
    if pledge.request_fingerprint != fingerprint:
        raise PledgeConflict(
            Message(
                "This Idempotency-Key was already used for a different pledge. "
                "Use a new key for a new pledge."
            )
        )
    if pledge.stripe_customer_id is None:
        raise PledgeConflict(
            Message("The first request with this Idempotency-Key is still running.")
        )
    return _created(settings, pledge)


def _by_idempotency_key(session: Session, key: str) -> Pledge | None:
    return session.scalars(select(Pledge).where(Pledge.idempotency_key == key)).one_or_none()


def _get_or_create_reader(session: Session, request: PledgeCreate) -> Reader:
    email = request.email.lower()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "email": email,
        "name": request.name,
        "locale": request.locale,
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    # A known reader's name and language change only from their signed link or from Stripe:
    # anyone can type an email address into the form.
    created = session.scalars(
        insert(Reader)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(Reader),
        execution_options={"populate_existing": True},
    ).one_or_none()
    return created or session.scalars(select(Reader).where(Reader.email == email)).one()


def _fingerprint(request: PledgeCreate) -> str:
    canonical = orjson.dumps(request.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()
