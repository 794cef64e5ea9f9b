"""Serves widget.js, its stylesheet and words, the settings it needs, and the demo article page."""

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from babel.messages.extract import extract
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from billing.i18n import translations
from billing.money import CURRENCY_EXPONENTS, to_minor
from billing.settings import Settings, get_settings
from billing.widget.schemas import Captcha, CurrencyLimits, FeeRule, WidgetConfig

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(tags=["widget"])


@router.get("/v1/widget/config")
def widget_config(settings: Annotated[Settings, Depends(get_settings)]) -> WidgetConfig:
    """Currencies with their limits in minor units, the card fee rule and the Stripe.js to load."""
    captcha = None
    if settings.captcha_provider != "none" and settings.captcha_site_key:
        captcha = Captcha(provider=settings.captcha_provider, site_key=settings.captcha_site_key)
    return WidgetConfig(
        publishable_key=settings.stripe_publishable_key,
        stripe_js_url=settings.stripe_js_url or "https://js.stripe.com/v3/",
        currencies=[
            CurrencyLimits(
                code=code,
                exponent=CURRENCY_EXPONENTS[code],
                min_amount=to_minor(settings.min_amount, code),
                max_amount=to_minor(settings.max_amount, code),
            )
            for code in settings.currencies
        ],
        fee=FeeRule(
            basis_points=settings.card_fee_basis_points,
            fixed_minor=settings.card_fee_fixed_minor,
        ),
        captcha=captcha,
    )


@lru_cache
def _widget_source() -> str:
    return (HERE / "static" / "widget.js").read_text(encoding="utf-8")


@router.get("/widget/widget.js", include_in_schema=False)
def widget_script(settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    """widget.js with the Stripe.js address up front, so both load at once instead of in turn."""
    prelude = f"window.ReaderPledges = {{stripeJs: {json.dumps(settings.stripe_js_url)}}};\n"
    return Response(
        prelude + _widget_source(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@lru_cache(maxsize=1)
def widget_msgids() -> frozenset[str]:
    """Every `_("…")` text in widget.js, found the way `pybabel extract` finds it."""
    with (HERE / "static" / "widget.js").open("rb") as source:
        found = extract("javascript", source)
        return frozenset(
            message for _line, message, _notes, _context in found if isinstance(message, str)
        )


@lru_cache(maxsize=16)
def widget_words(language: str) -> dict[str, str]:
    """The widget's texts in `language`, from the same catalog as mails and pages; a text the
    catalog lacks is left out, and the widget shows it in English."""
    catalog = translations(language)
    words = {msgid: catalog.gettext(msgid) for msgid in sorted(widget_msgids())}
    return {msgid: text for msgid, text in words.items() if text != msgid}


@router.get("/widget/i18n/{language}.json", include_in_schema=False)
def widget_language(
    language: str, settings: Annotated[Settings, Depends(get_settings)]
) -> Response:
    """One language's words, loaded by the widget only on pages in that language: widget.js
    itself carries English alone."""
    if language not in settings.languages:
        raise HTTPException(status_code=404)
    return Response(
        json.dumps(widget_words(language), ensure_ascii=False),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/demo", response_class=HTMLResponse, include_in_schema=False)
def demo_article(
    request: Request, settings: Annotated[Settings, Depends(get_settings)]
) -> HTMLResponse:
    """An article with the widget under it, to try the whole flow locally."""
    if settings.environment == "production":
        raise HTTPException(status_code=404)
    return templates.TemplateResponse(
        request, "demo.html", {"widget_url": f"{settings.public_url}/widget/widget.js"}
    )


def install_widget(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/widget", StaticFiles(directory=HERE / "static"), name="widget")
