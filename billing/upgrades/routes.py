"""The "make it monthly" page behind the signed link in a gift's receipt and thank-you."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from billing.dependencies import get_session
from billing.i18n import request_language, translate
from billing.manage import service as manage
from billing.manage.pages import PAGE_HEADERS, render_page
from billing.manage.routes import BAD_AMOUNT, INVALID_LINK, UNAVAILABLE, amount_from_text
from billing.models import Pledge, Reader
from billing.money import CURRENCY_EXPONENTS, to_minor
from billing.pledges.service import PledgeError
from billing.reader_links import UPGRADE_SALT, manage_link, pledge_id_from_token
from billing.settings import Settings, get_settings
from billing.stripe_gateway import CardDeclined, GatewayError, StripeGateway, get_gateway
from billing.upgrades import service

router = APIRouter(prefix="/monthly", include_in_schema=False)


def _gift_for(
    session: Session, token: str, *, for_update: bool = False
) -> tuple[Pledge, Reader] | None:
    gift_id = pledge_id_from_token(token, salt=UPGRADE_SALT)
    return None if gift_id is None else manage.find(session, gift_id, for_update=for_update)


def _page(
    request: Request,
    settings: Settings,
    token: str,
    found: tuple[Pledge, Reader] | None,
    *,
    session: Session,
    amount_text: str | None = None,
    error: str | None = None,
    client_secret: str | None = None,
    status: int = 200,
) -> Response:
    if found is None:
        message = translate(INVALID_LINK, request_language(request))
        return render_page(request, "request_link.html", {"message": message}, status=404)
    gift = found[0]
    monthly = service.upgrade_of(session, gift)
    suggested = service.suggested_minor(settings, gift)
    context: dict[str, Any] = {
        "token": token,
        "gift": gift,
        "monthly": monthly,
        "upgradable": service.is_upgradable(gift),
        "manage_url": manage_link(monthly.id) if monthly is not None else None,
        "amount_text": amount_text or _major_text(suggested, gift.currency),
        "minimum": to_minor(settings.min_amount, gift.currency),
        "error": translate(error, gift.locale) if error else None,
        "client_secret": client_secret,
        "stripe_js_url": settings.stripe_js_url,
        "publishable_key": settings.stripe_publishable_key,
    }
    return render_page(request, "monthly.html", context, language=gift.locale, status=status)


def _major_text(amount_minor: int, currency: str) -> str:
    exponent = CURRENCY_EXPONENTS[currency]
    whole, part = divmod(amount_minor, 10**exponent)
    return str(whole) if part == 0 else f"{whole}.{part:0{exponent}d}"


@router.get("/{token}", response_class=HTMLResponse)
def monthly_page(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    """Shows the amount to confirm; nothing happens until the reader presses the button."""
    return _page(request, settings, token, _gift_for(session, token), session=session)


@router.post("/{token}", response_class=HTMLResponse)
def start_monthly(
    request: Request,
    token: str,
    amount: Annotated[str, Form(max_length=20)],
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    found = _gift_for(session, token, for_update=True)
    if found is None:
        return _page(request, settings, token, None, session=session)
    gift, reader = found
    try:
        amount_minor = amount_from_text(amount, gift.currency)
        if amount_minor is None:
            raise manage.ManageError(BAD_AMOUNT, 422)
        started = service.start_monthly(
            session, gateway, settings, gift=gift, reader=reader, amount_minor=amount_minor
        )
    except (manage.ManageError, PledgeError) as error:
        session.rollback()
        return _page(
            request, settings, token, _gift_for(session, token), session=session,
            amount_text=amount, error=error.message, status=error.status_code,
        )  # fmt: skip
    except GatewayError:
        session.rollback()
        return _page(
            request, settings, token, _gift_for(session, token), session=session,
            amount_text=amount, error=UNAVAILABLE, status=503,
        )  # fmt: skip
    session.commit()
    if started.client_secret:
        return _page(
            request, settings, token, found, session=session, client_secret=started.client_secret
        )
    return RedirectResponse(f"/monthly/{token}", status_code=303, headers=PAGE_HEADERS)


@router.post("/{token}/confirm", response_model=None)
def finish_monthly(
    token: str,
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
) -> JSONResponse:
    """After `stripe.handleNextAction`: `{"status": "active" | "failed" | "pending"}`."""
    found = _gift_for(session, token, for_update=True)
    if found is None:
        return JSONResponse({"message": translate(INVALID_LINK, request_language(request))}, 404)
    language = found[0].locale
    try:
        pledge = service.finish(session, gateway, gift=found[0])
    except manage.ManageError as error:
        return JSONResponse({"message": translate(error.message, language)}, error.status_code)
    except CardDeclined as declined:
        return JSONResponse({"message": translate(declined.reason, language)}, 402)
    session.commit()
    return JSONResponse({"status": pledge.status}, headers=PAGE_HEADERS)
