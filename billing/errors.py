"""How errors reach clients: one JSON shape with a `message` a reader or developer can act on."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from billing.pledges.service import PledgeError
from billing.stripe_gateway import GatewayError

log = structlog.get_logger()

FIELD_MESSAGES = {
    "amount": "amount must be a whole number of minor units, for example 500 for 5.00.",
    "email": "Enter a valid email address.",
    "currency": "currency must be a three-letter code such as EUR.",
    "interval": "interval must be month, year or once.",
    "cover_fees": "cover_fees must be true or false.",
    "locale": "locale must be en or ru.",
}


def error_body(message: str, detail: list[dict[str, Any]]) -> dict[str, Any]:
    return {"message": message, "detail": detail}


def _friendly(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = location[0] if location else ""
    kind = error.get("type", "")
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if kind == "missing":
        return f"{field} is required." if field else "A request body is required."
    if kind == "extra_forbidden":
        return f"Unknown field: {field}."
    if kind == "model_attributes_type" or not field:
        return "The request body must be a JSON object."
    return FIELD_MESSAGES.get(field, f"{field}: {error.get('msg', 'invalid value')}")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": _friendly(e), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(error_body(errors[0]["msg"], errors), status_code=422)

    @app.exception_handler(PledgeError)
    async def _pledge_error(_request: Request, exc: PledgeError) -> JSONResponse:
        loc = ["body", exc.field] if exc.field else []
        detail = [{"loc": loc, "msg": exc.message, "type": type(exc).__name__}]
        return JSONResponse(error_body(exc.message, detail), status_code=exc.status_code)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        log.warning("stripe_unavailable", path=request.url.path, error=str(exc))
        message = "Payments are unavailable for a moment. Please try again."
        return JSONResponse(
            error_body(message, [{"loc": [], "msg": message, "type": "payment_provider"}]),
            status_code=503,
            headers={"Retry-After": "5"},
        )
