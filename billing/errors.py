"""How errors reach clients: one JSON shape with a `message` a reader or developer can act on,
in the language the client asks for (Accept-Language; the widget sends its own)."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from billing.i18n import Message, request_language, translate
from billing.pledges.service import PledgeError
from billing.stripe_gateway import GatewayError

log = structlog.get_logger()

FIELD_MESSAGES = {
    "amount": Message("amount must be a whole number of minor units, for example 500 for 5.00."),
    "email": Message("Enter a valid email address."),
    "currency": Message("currency must be a three-letter code such as EUR."),
    "interval": Message("interval must be month, year or once."),
    "cover_fees": Message("cover_fees must be true or false."),
    "locale": Message("locale must be a language code such as en or de."),
}
UNAVAILABLE = Message("Payments are unavailable for a moment. Please try again.")


def error_body(message: str, detail: list[dict[str, Any]]) -> dict[str, Any]:
    return {"message": message, "detail": detail}


def _friendly(error: dict[str, Any]) -> Message:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = location[0] if location else ""
    kind = error.get("type", "")
    if kind == "json_invalid":
        return Message("The request body is not valid JSON.")
    if kind == "missing":
        if field:
            return Message("%(field)s is required.", field=field)
        return Message("A request body is required.")
    if kind == "extra_forbidden":
        return Message("Unknown field: %(field)s.", field=field)
    if kind == "model_attributes_type" or not field:
        return Message("The request body must be a JSON object.")
    if field in FIELD_MESSAGES:
        return FIELD_MESSAGES[field]
    return Message("%(field)s: %(problem)s", field=field, problem=error.get("msg", "invalid value"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        language = request_language(request)
        errors = [
            {
                "loc": list(e.get("loc", ())),
                "msg": translate(_friendly(e), language),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        return JSONResponse(error_body(errors[0]["msg"], errors), status_code=422)

    @app.exception_handler(PledgeError)
    async def _pledge_error(request: Request, exc: PledgeError) -> JSONResponse:
        message = translate(exc.message, request_language(request))
        loc = ["body", exc.field] if exc.field else []
        detail = [{"loc": loc, "msg": message, "type": type(exc).__name__}]
        return JSONResponse(error_body(message, detail), status_code=exc.status_code)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        log.warning("stripe_unavailable", path=request.url.path, error=str(exc))
        message = translate(UNAVAILABLE, request_language(request))
        return JSONResponse(
            error_body(message, [{"loc": [], "msg": message, "type": "payment_provider"}]),
            status_code=503,
            headers={"Retry-After": "5"},
        )
