"""POST /webhooks/stripe: verify the signature, store the event, answer 2xx, process later."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from billing.db import open_async_pool
from billing.errors import error_body
from billing.settings import get_settings
from billing.task_queue import Wakeup
from webhooks.inbox import DRAIN_TASK, PENDING, InboxWriter, InvalidEvent, parse_event
from webhooks.signature import SignatureError, verify

router = APIRouter(tags=["webhooks"])
WEBHOOK_PATH = "/webhooks/stripe"
# Stripe's events (an invoice with many lines, a customer with much metadata) pass 64 KiB; one
# refused is retried for three days and then lost, so this route takes up to 1 MiB.
MAX_WEBHOOK_BYTES = 1024 * 1024
# Workers find stored events in the inbox; this only tells them, a few times a second at most.
drain_wakeup = Wakeup(DRAIN_TASK)
_writer_lock = asyncio.Lock()
# Statements in flight at once; the events arriving meanwhile wait and go in together.
FLUSHERS = 4


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse(
        error_body(message, [{"loc": [], "msg": message, "type": "webhook"}]), status_code=400
    )


@asynccontextmanager
async def inbox_pool_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Close the inbox's connections with the app (they open on the first event)."""
    yield
    writer: InboxWriter | None = getattr(app.state, "inbox_writer", None)
    pool: AsyncConnectionPool | None = getattr(app.state, "inbox_pool", None)
    app.state.inbox_writer = app.state.inbox_pool = None
    if writer is not None:
        await writer.close()
    if pool is not None:
        await pool.close()


async def _inbox_writer(app: FastAPI) -> InboxWriter:
    writer: InboxWriter | None = getattr(app.state, "inbox_writer", None)
    if writer is None:
        async with _writer_lock:
            writer = getattr(app.state, "inbox_writer", None)
            if writer is None:
                app.state.inbox_pool = await open_async_pool(FLUSHERS)
                writer = app.state.inbox_writer = InboxWriter(app.state.inbox_pool, FLUSHERS)
    return writer


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
    settings = get_settings()
    secrets = [secret.get_secret_value() for secret in settings.stripe_webhook_secret]
    try:
        verify(body, request.headers.get("stripe-signature"), secrets)
        event = parse_event(body)
    except (SignatureError, InvalidEvent) as error:
        return _bad_request(str(error))
    livemode = settings.stripe_api_key.get_secret_value().startswith(("sk_live_", "rk_live_"))
    writer = await _inbox_writer(request.app)
    stored = await writer.store(body, event, livemode=livemode)
    if stored.status == PENDING:  # committed: a worker may now claim it
        drain_wakeup.poke()
    return JSONResponse({"received": True, "status": stored.status, "duplicate": stored.duplicate})
