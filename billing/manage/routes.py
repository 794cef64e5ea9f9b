"""The manage page behind a signed link, link re-requests, and the reader's export and erasure."""

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from billing.abuse.guards import client_ip, guard_card, too_many
from billing.abuse.limiter import Limits
from billing.db import utcnow
from billing.dependencies import get_session
from billing.i18n import Message, format_day, request_language, translate
from billing.manage import data_rights, saves, service
from billing.manage.pages import PAGE_HEADERS, render_page
from billing.models import Pledge, Reader
from billing.money import CURRENCY_EXPONENTS, minor_per_major
from billing.pledges.schemas import CardSubmission
from billing.pledges.service import PledgeError
from billing.reader_links import pledge_id_from_token
from billing.settings import Settings, get_settings
from billing.statements.service import statement_years
from billing.stripe_gateway import CardDeclined, GatewayError, StripeGateway, get_gateway

router = APIRouter(prefix="/manage", include_in_schema=False)

# What the manage page says after a change; %(date)s is when a paused pledge resumes.
DONE_NOTICES = {
    "amount": Message("Your pledge was changed. A confirmation is on its way."),
    "cancel": Message("Your pledge was cancelled. A confirmation is on its way."),
    "pause": Message("Your pledge is paused for a month. A confirmation is on its way."),
    "lowered": Message(
        "Your pledge was lowered. Thank you for staying! A confirmation is on its way."
    ),
    "skipped": Message(
        "Your next payment is skipped; your pledge continues on %(date)s. "
        "A confirmation is on its way."
    ),
    "paused": Message("Your pledge is paused until %(date)s. A confirmation is on its way."),
    "card": Message("Thank you for staying! Enter your new card below."),
}
INVALID_LINK = Message("This link is not valid or has expired. Enter your email to get a new one.")
BAD_AMOUNT = Message("Enter an amount such as 5 or 7.50.")
UNAVAILABLE = Message("Payments are unavailable for a moment. Please try again.")
CARD_UPDATED = Message("Your new card will be used from the next payment.")
EMAIL_SHAPE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@]+$")


def _page(
    request: Request, name: str, context: dict[str, Any], status: int = 200, lang: str = ""
) -> Response:
    return render_page(request, name, context, language=lang or None, status=status)


def _pledge_for(
    session: Session, token: str, *, for_update: bool = False
) -> tuple[Pledge, Reader] | None:
    pledge_id = pledge_id_from_token(token)
    return None if pledge_id is None else service.find(session, pledge_id, for_update=for_update)


def _invalid_link(request: Request) -> Response:
    message = translate(INVALID_LINK, request_language(request))
    return _page(request, "request_link.html", {"message": message}, status=404)


def amount_from_text(text: str, currency: str) -> int | None:
    """'7', '7.5' or '7,50' in major units to minor units, without floats."""
    match = re.fullmatch(r"\s*(\d{1,9})(?:[.,](\d*))?\s*", text)
    exponent = CURRENCY_EXPONENTS[currency]
    if match is None or len(match.group(2) or "") > exponent:
        return None
    fraction = (match.group(2) or "").ljust(exponent, "0")
    return int(match.group(1)) * minor_per_major(currency) + int(fraction or "0")


def _manage_page(
    request: Request,
    session: Session,
    settings: Settings,
    token: str,
    pledge: Pledge,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    context = {
        "token": token,
        "pledge": pledge,
        "resumes_date": format_day(pledge.resumes_at, pledge.locale),
        "payments": service.payments_of(session, pledge),
        "running": service.is_running_subscription(pledge),
        "amount_text": str(
            Decimal(pledge.amount_minor).scaleb(-CURRENCY_EXPONENTS[pledge.currency])
        ),
        "error": translate(error, pledge.locale) if error else None,
        "notice": notice,
        "stripe_js_url": settings.stripe_js_url,
        "publishable_key": settings.stripe_publishable_key,
        # Giving statements: one link per finished fiscal year with payments (issue 12).
        "statement_years": statement_years(session, settings, pledge.reader_id),
    }
    return _page(request, "manage.html", context, status=status, lang=pledge.locale)


def _save_page(
    request: Request,
    settings: Settings,
    token: str,
    pledge: Pledge,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    now = utcnow()
    skipped, skip_resumes = saves.skip_dates(pledge, now)
    minimum = saves.minimum_minor(settings, pledge)
    context = {
        "token": token,
        "pledge": pledge,
        "error": translate(error, pledge.locale) if error else None,
        "minimum": minimum,
        "suggested_text": _major_text(max(minimum, pledge.amount_minor // 2), pledge.currency),
        "skipped_date": format_day(skipped, pledge.locale),
        "skip_resumes_date": format_day(skip_resumes, pledge.locale),
        "pauses": [
            (months, format_day(saves.pause_until(now, months), pledge.locale))
            for months in saves.PAUSE_MONTHS
        ],
    }
    return _page(request, "save.html", context, status=status, lang=pledge.locale)


def _major_text(amount_minor: int, currency: str) -> str:
    return str(Decimal(amount_minor).scaleb(-CURRENCY_EXPONENTS[currency]))


@router.get("", response_class=HTMLResponse)
def request_link_form(request: Request) -> Response:
    return _page(request, "request_link.html", {"message": None})


@router.post("/link", response_class=HTMLResponse)
def request_link(
    request: Request,
    email: Annotated[str, Form(max_length=320)],
    session: Annotated[Session, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    """Answers the same whether or not the address is known, so it reveals nothing."""
    language = request_language(request)

    def answer(message: Message, status: int = 200) -> Response:
        context = {"message": translate(message, language), "sent": status == 200}
        return _page(request, "request_link.html", context, status, language)

    if not EMAIL_SHAPE.match(email.strip()):
        return answer(Message("Enter a valid email address."), 422)
    limits = Limits(settings)
    if limits.attempt("ip", client_ip(request), "manage_link") or limits.attempt(
        "email", email, "manage_link"
    ):
        return answer(Message("Too many requests. Please try again later."), 429)
    service.request_links(session, email)
    session.commit()
    return answer(Message("If we hold a pledge for that address, we have sent a link to it."))


@router.get("/{token}", response_class=HTMLResponse)
def manage_page(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
    done: str | None = None,
) -> Response:
    found = _pledge_for(session, token)
    if found is None:
        return _invalid_link(request)
    pledge = found[0]
    notice = None
    if done in DONE_NOTICES:
        resumes = format_day(pledge.resumes_at, pledge.locale)
        notice = translate(DONE_NOTICES[done], pledge.locale) % {"date": resumes}
    return _manage_page(request, session, settings, token, pledge, notice=notice)


def _run_change(
    request: Request,
    session: Session,
    settings: Settings,
    token: str,
    change: Any,
    done: str,
    *,
    from_save_page: bool = False,
) -> Response:
    found = _pledge_for(session, token, for_update=True)
    if found is None:
        return _invalid_link(request)
    pledge, reader = found

    def again(message: str, status: int) -> Response:  # translated by the page
        if from_save_page and service.is_running_subscription(pledge):
            return _save_page(request, settings, token, pledge, error=message, status=status)
        return _manage_page(request, session, settings, token, pledge, error=message, status=status)

    try:
        change(pledge, reader)
    except (service.ManageError, PledgeError) as error:
        session.rollback()
        pledge = service.find(session, pledge.id)[0]  # type: ignore[index]
        return again(error.message, error.status_code)
    except GatewayError:
        session.rollback()
        return again(UNAVAILABLE, 503)
    session.commit()
    target = f"/manage/{token}?done={done}" + ("#card-update" if done == "card" else "")
    return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)


@router.post("/{token}/amount", response_class=HTMLResponse)
def change_amount(
    request: Request,
    token: str,
    amount: Annotated[str, Form(max_length=20)],
    interval: Annotated[str, Form(max_length=8)],
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    def change(pledge: Pledge, reader: Reader) -> None:
        amount_minor = amount_from_text(amount, pledge.currency)
        if amount_minor is None:
            raise service.ManageError(BAD_AMOUNT, 422)
        service.change_amount(
            session, gateway, settings, pledge=pledge, reader=reader,
            amount_minor=amount_minor, interval=interval,
        )  # fmt: skip

    return _run_change(request, session, settings, token, change, "amount")


@router.post("/{token}/cancel", response_class=HTMLResponse)
def cancel(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    def change(pledge: Pledge, reader: Reader) -> None:
        service.cancel(session, gateway, pledge=pledge, reader=reader, reason=reason)

    return _run_change(request, session, settings, token, change, "cancel")


@router.post("/{token}/pause", response_class=HTMLResponse)
def pause(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    def change(pledge: Pledge, reader: Reader) -> None:
        service.pause(session, gateway, pledge=pledge, reader=reader)

    return _run_change(request, session, settings, token, change, "pause")


@router.post("/{token}/cancel/start", response_class=HTMLResponse)
def start_cancel(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
) -> Response:
    """Cancel asks once: the save page, with the reader's other choices and "cancel anyway"."""
    found = _pledge_for(session, token, for_update=True)
    if found is None:
        return _invalid_link(request)
    if service.is_running_subscription(found[0]):
        saves.start_cancel(session, pledge=found[0])
        session.commit()
        return RedirectResponse(f"/manage/{token}/save", status_code=303, headers=PAGE_HEADERS)
    return RedirectResponse(f"/manage/{token}", status_code=303, headers=PAGE_HEADERS)


@router.get("/{token}/save", response_class=HTMLResponse)
def save_page(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    found = _pledge_for(session, token)
    if found is None:
        return _invalid_link(request)
    if not service.is_running_subscription(found[0]):
        return RedirectResponse(f"/manage/{token}", status_code=303, headers=PAGE_HEADERS)
    return _save_page(request, settings, token, found[0])


@router.post("/{token}/save/lower", response_class=HTMLResponse)
def save_by_lowering(
    request: Request,
    token: str,
    amount: Annotated[str, Form(max_length=20)],
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    def change(pledge: Pledge, reader: Reader) -> None:
        amount_minor = amount_from_text(amount, pledge.currency)
        if amount_minor is None:
            raise service.ManageError(BAD_AMOUNT, 422)
        saves.lower(
            session, gateway, settings, pledge=pledge, reader=reader, amount_minor=amount_minor
        )

    return _run_change(request, session, settings, token, change, "lowered", from_save_page=True)


@router.post("/{token}/save/skip", response_class=HTMLResponse)
def save_by_skipping(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    def change(pledge: Pledge, reader: Reader) -> None:
        saves.skip(session, gateway, pledge=pledge, reader=reader)

    return _run_change(request, session, settings, token, change, "skipped", from_save_page=True)


@router.post("/{token}/save/pause", response_class=HTMLResponse)
def save_by_pausing(
    request: Request,
    token: str,
    months: Annotated[str, Form(max_length=2)],
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    def change(pledge: Pledge, reader: Reader) -> None:
        count = int(months) if months.isdigit() else 0
        saves.pause(session, gateway, pledge=pledge, reader=reader, months=count)

    return _run_change(request, session, settings, token, change, "paused", from_save_page=True)


@router.post("/{token}/save/card", response_class=HTMLResponse)
def save_by_changing_card(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    def change(pledge: Pledge, _reader: Reader) -> None:
        saves.change_card(session, pledge=pledge)

    return _run_change(request, session, settings, token, change, "card", from_save_page=True)


class CardUpdateAnswer(BaseModel):
    status: Literal["updated", "requires_action", "failed"]
    message: str = ""
    client_secret: str | None = None
    setup_intent_id: str | None = None


class CardUpdateConfirm(BaseModel):
    setup_intent_id: str = Field(max_length=255)


def _json_error(message: str, status: int, language: str) -> JSONResponse:
    return JSONResponse(
        {"message": translate(message, language), "detail": []},
        status_code=status,
        headers=PAGE_HEADERS,
    )


@router.post("/{token}/card", response_model=None)
def update_card(
    token: str,
    submission: CardSubmission,
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> CardUpdateAnswer | JSONResponse:
    """The new card as a PaymentMethod id; the server confirms it, as the pledge form does."""
    found = _pledge_for(session, token, for_update=True)
    if found is None:
        return _json_error(INVALID_LINK, 404, request_language(request))
    pledge, reader = found
    language = pledge.locale
    if submission.payment_method is None:
        return _json_error(Message("Enter the new card first."), 422, language)
    try:
        guard = guard_card(
            request=request, gateway=gateway, settings=settings, email=reader.email,
            payment_method_id=submission.payment_method, purpose="card_update",
        )  # fmt: skip
        if exceeded := guard.limits.attempt("pledge", str(pledge.id), purpose="card_update"):
            raise too_many(exceeded)
        assert guard.card is not None
        state = service.update_card(session, gateway, pledge=pledge, reader=reader, card=guard.card)
    except (PledgeError, service.ManageError) as error:
        return _json_error(error.message, error.status_code, language)
    except CardDeclined as declined:
        guard.outcome("failed")
        return _json_error(declined.reason, 402, language)
    session.commit()
    if state.status == "requires_action":
        return CardUpdateAnswer(
            status="requires_action", client_secret=state.client_secret, setup_intent_id=state.id
        )
    return CardUpdateAnswer(status="updated", message=translate(CARD_UPDATED, language))


@router.post("/{token}/card/confirm", response_model=None)
def finish_card_update(
    token: str,
    body: CardUpdateConfirm,
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
) -> CardUpdateAnswer | JSONResponse:
    """After the bank's 3-D Secure step for the card sent to `/card`."""
    found = _pledge_for(session, token, for_update=True)
    if found is None:
        return _json_error(INVALID_LINK, 404, request_language(request))
    language = found[0].locale
    try:
        service.finish_card_update(
            session, gateway, pledge=found[0], reader=found[1], setup_intent_id=body.setup_intent_id
        )
    except service.ManageError as error:
        return _json_error(error.message, error.status_code, language)
    except CardDeclined as declined:
        return _json_error(declined.reason, 402, language)
    session.commit()
    return CardUpdateAnswer(status="updated", message=translate(CARD_UPDATED, language))


@router.get("/{token}/export", response_model=None)
def export(
    token: str, request: Request, session: Annotated[Session, Depends(get_session)]
) -> JSONResponse:
    found = _pledge_for(session, token)
    if found is None:
        return _json_error(INVALID_LINK, 404, request_language(request))
    return JSONResponse(
        data_rights.export_reader(session, found[1]),
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": 'attachment; filename="my-pledge-data.json"',
        },
    )


@router.post("/{token}/erase", response_class=HTMLResponse)
def erase(
    request: Request,
    token: str,
    session: Annotated[Session, Depends(get_session)],
    gateway: Annotated[StripeGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
    confirm: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    found = _pledge_for(session, token, for_update=True)
    if found is None:
        return _invalid_link(request)
    if confirm != "erase":
        message = Message("Tick the box to confirm that we should erase your data.")
        return _manage_page(request, session, settings, token, found[0], error=message, status=422)
    lang = found[0].locale
    data_rights.erase_reader(session, gateway, found[1])
    session.commit()
    return _page(request, "erased.html", {}, lang=lang)
