"""FastAPI dependencies that stand in front of the pledge routes and refuse abusive requests."""

import ipaddress
import uuid
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from billing.abuse import captcha
from billing.abuse.limiter import Exceeded, Limits, Scope
from billing.dependencies import get_session
from billing.i18n import Message, Plural
from billing.models import Pledge, PledgeStatus, Reader
from billing.pledges.schemas import CardSubmission
from billing.pledges.service import TOO_MANY_CARDS, PledgeError
from billing.settings import Settings, get_settings
from billing.stripe_gateway import (
    CardDeclined,
    CardInfo,
    NotFoundInStripe,
    StripeGateway,
    get_gateway,
)

log = structlog.get_logger()
HONEYPOT_FIELD = "website"


class Refused(PledgeError):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def too_many(exceeded: Exceeded) -> Refused:
    minutes = max(1, round(exceeded.retry_after_seconds / 60))
    if exceeded.reason == "declines":
        message = Plural(
            "Too many declined cards. Please try again in %(num)d minute.",
            "Too many declined cards. Please try again in %(num)d minutes.",
            minutes,
        )
    else:
        message = Plural(
            "Too many attempts. Please try again in %(num)d minute.",
            "Too many attempts. Please try again in %(num)d minutes.",
            minutes,
        )
    return Refused(message, 429)


def _allowed_origins(settings: Settings) -> set[str]:
    return {origin.rstrip("/") for origin in [*settings.widget_origins, settings.public_url]}


def check_origin(request: Request, settings: Settings) -> None:
    """Browsers name the page's origin; a page outside WIDGET_ORIGINS takes no pledges."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in _allowed_origins(settings):
        log.warning("abuse_refused", reason="origin", origin=origin[:200])
        raise Refused(Message("This site is not allowed to take pledges."), 403)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def client_network(request: Request) -> str:
    """What per-IP limits count: an IPv6 address as its /64, which one subscriber holds whole."""
    host = client_ip(request)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def guard_pledge_creation(
    request: Request, settings: Annotated[Settings, Depends(get_settings)]
) -> None:
    """Origin, honeypot, per-IP and per-email limits, recent declines, then the captcha."""
    check_origin(request, settings)
    try:
        body: Any = await request.json()
    except ValueError:
        body = None  # the route's validation explains what is wrong with it
    fields = body if isinstance(body, dict) else {}
    if fields.get(HONEYPOT_FIELD):
        log.warning("abuse_refused", reason="honeypot")
        raise Refused(
            Message("We could not take this pledge. Please reload the page and try again."), 400
        )

    sources: list[tuple[Scope, str]] = [("ip", client_network(request))]
    email = fields.get("email")
    if isinstance(email, str) and email.strip():
        sources.append(("email", email))
    # One trip to a worker thread for every check (Redis is called synchronously).
    if exceeded := await run_in_threadpool(_first_exceeded, Limits(settings), sources):
        raise too_many(exceeded)

    if settings.captcha_provider != "none":
        token = request.headers.get("captcha-token", "")
        try:
            verified = bool(token) and await captcha.verify(settings, token, client_ip(request))
        except captcha.CaptchaUnavailable:
            raise Refused(
                Message("Verification is unavailable for a moment. Please try again."), 503
            ) from None
        if not verified:
            raise Refused(Message("Please complete the verification and try again."), 400)


def _first_exceeded(limits: Limits, sources: list[tuple[Scope, str]]) -> Exceeded | None:
    """Count an attempt for each source in turn, and stop at the first over a limit."""
    for scope, value in sources:
        if exceeded := limits.attempt(scope, value) or limits.declines_exhausted(scope, value):
            return exceeded
    return None


class CardGuard:
    """Who is trying a card: checked before Stripe sees it, told about declines after it."""

    def __init__(self, limits: Limits, sources: list[tuple[Scope, str]], card: CardInfo | None):
        self.limits = limits
        self._sources = sources
        self.card = card

    def outcome(self, status: str) -> None:
        if status == PledgeStatus.FAILED:
            for scope, value in self._sources:
                self.limits.declined(scope, value)


def guard_card(
    *,
    request: Request,
    gateway: StripeGateway,
    settings: Settings,
    email: str | None,
    payment_method_id: str | None,
    purpose: str,
) -> CardGuard:
    """Per-card attempts, then refusal while this network, email or card keeps being declined.

    The card is read from Stripe by its id before anything is charged, so a card tester's list
    meets the per-card limit and the decline limits card by card.
    """
    limits = Limits(settings)
    sources: list[tuple[Scope, str]] = [("ip", client_network(request))]
    if email:
        sources.append(("email", email))
    card = None
    if payment_method_id is not None:
        try:
            card = gateway.payment_method_card(payment_method_id)
        except NotFoundInStripe:
            raise Refused(Message("This card was not found. Please enter it again."), 422) from None
        except CardDeclined as declined:
            raise Refused(declined.reason, 422) from None
        if card.fingerprint:
            sources.append(("card", card.fingerprint))
            if exceeded := limits.attempt("card", card.fingerprint, purpose=purpose):
                raise too_many(exceeded)
    for scope, value in sources:
        if exceeded := limits.declines_exhausted(scope, value):
            raise too_many(exceeded)
    return CardGuard(limits, sources, card)


def guard_pledge_confirmation(
    pledge_id: str,
    submission: CardSubmission,
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> CardGuard:
    check_origin(request, settings)
    # A read without a lock, in the transaction the route goes on with: the route locks the
    # pledge and reads it afresh before charging.
    found = _pledge_and_email(session, pledge_id)
    if found is None or found[0] != PledgeStatus.PENDING:
        if found is not None and found[0] == PledgeStatus.FAILED and submission.payment_method:
            raise Refused(TOO_MANY_CARDS, 429)
        # Unknown or settled: the route answers without charging, and no card is read.
        return CardGuard(Limits(settings), [], None)
    return guard_card(
        request=request, gateway=gateway, settings=settings, email=found[1],
        payment_method_id=submission.payment_method, purpose="pledge",
    )  # fmt: skip


def _pledge_and_email(session: Session, pledge_id: str) -> tuple[str, str] | None:
    """The pledge's status and its reader's email, in one statement."""
    try:
        key = uuid.UUID(pledge_id)
    except ValueError:
        return None
    row = session.execute(
        select(Pledge.status, Reader.email)
        .join(Reader, Reader.id == Pledge.reader_id)
        .where(Pledge.id == key)
    ).first()
    return (row.status, row.email) if row is not None else None
