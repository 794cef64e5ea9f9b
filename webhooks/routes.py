"""POST /webhooks/stripe: verify the signature, store the event, answer 2xx, process later."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from billing.db import get_sessionmaker
from billing.errors import error_body
from billing.settings import get_settings
from webhooks.inbox import InvalidEvent, Stored, parse_event, store_event
from webhooks.signature import SignatureError, verify

router = APIRouter(tags=["webhooks"])
WEBHOOK_PATH = "/webhooks/stripe"
# Stripe's events (an invoice with many lines, a customer with much metadata) pass 64 KiB; one
# refused is retried for three days and then lost, so this route takes up to 1 MiB.
MAX_WEBHOOK_BYTES = 1024 * 1024


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse(
        error_body(message, [{"loc": [], "msg": message, "type": "webhook"}]), status_code=400
    )


def _store(event: dict[str, Any]) -> Stored:
    settings = get_settings()
    livemode = settings.stripe_api_key.get_secret_value().startswith(("sk_live_", "rk_live_"))
    with get_sessionmaker()() as session:
        stored = store_event(session, event, livemode=livemode)
        session.commit()
    return stored


@router.post(
    WEBHOOK_PATH,
    summary="Stripe's webhook",
    responses={
        400: {"description": "Missing, malformed, wrong or stale signature, or not an event."},
        413: {"description": "The body is over 1 MiB."},
    },
)
async def stripe_webhook(request: Request) -> JSONResponse:
    body = await request.body()
    secrets = [secret.get_secret_value() for secret in get_settings().stripe_webhook_secret]
    try:
        verify(body, request.headers.get("stripe-signature"), secrets)
        event = parse_event(body)
    except (SignatureError, InvalidEvent) as error:
        return _bad_request(str(error))
    stored = await run_in_threadpool(_store, event)
    return JSONResponse({"received": True, "status": stored.status, "duplicate": stored.duplicate})
