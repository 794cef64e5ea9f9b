"""HTTP endpoints the support widget calls."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, status
from sqlalchemy.orm import Session

from billing.abuse.guards import CardGuard, guard_pledge_confirmation, guard_pledge_creation
from billing.dependencies import get_session
from billing.i18n import request_language, translate
from billing.pledges import service
from billing.pledges.schemas import CardSubmission, PledgeConfirmed, PledgeCreate, PledgeCreated
from billing.settings import Settings, get_settings
from billing.stripe_gateway import StripeGateway, get_gateway

router = APIRouter(prefix="/v1/pledges", tags=["pledges"])

ERRORS = {
    404: {"description": "No pledge with this id."},
    400: {"description": "Refused: honeypot filled or captcha not verified."},
    403: {"description": "The page's origin is not in WIDGET_ORIGINS."},
    409: {"description": "Idempotency-Key reused with another body, or card not confirmed yet."},
    422: {"description": "Invalid input; `message` says what to change."},
    429: {"description": "Too many attempts or declined cards from this IP, email or card."},
    503: {"description": "Stripe is unreachable; retrying with the same Idempotency-Key is safe."},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=ERRORS,  # type: ignore[arg-type]
    dependencies=[Depends(guard_pledge_creation)],
)
def create_pledge(
    request: PledgeCreate,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> PledgeCreated:
    """Start a pledge; the card follows to `/confirm` as a PaymentMethod id."""
    created = service.create_pledge(session, gateway, settings, request, idempotency_key)
    session.commit()
    return created


@router.post("/{pledge_id}/confirm", responses=ERRORS)  # type: ignore[arg-type]
def confirm_pledge(
    pledge_id: str,
    submission: CardSubmission,
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    guard: Annotated[CardGuard, Depends(guard_pledge_confirmation)],
) -> PledgeConfirmed:
    """Try the card (`{"payment_method": "pm_…"}`): the server saves it with Stripe, then starts
    the subscription or charges the gift. After a `requires_action` answer and Stripe.js's
    3-D Secure step, send `{}` to finish. A declined card may be followed by another, up to
    three per pledge."""
    confirmed = service.confirm_pledge(session, gateway, pledge_id, guard.card)
    session.commit()
    guard.outcome(confirmed.status)
    if confirmed.reason:
        # Stored in English; said in the reader's language.
        confirmed.reason = translate(confirmed.reason, request_language(request))
    return confirmed
