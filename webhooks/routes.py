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
from webhooks.inbox import DRAIN_TASK, PENDING, InvalidEvent, parse_event, store_event
from webhooks.signature import SignatureError, verify

router = APIRouter(tags=["webhooks"])
# Workers find stored events in the inbox; this only tells them, a few times a second at most.
drain_wakeup = Wakeup(DRAIN_TASK)
_pool_lock = asyncio.Lock()
# Enough connections for the commits of concurrent requests to share their disk flushes.
POOL_SIZE = 8


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse(
        error_body(message, [{"loc": [], "msg": message, "type": "webhook"}]), status_code=400
    )


@asynccontextmanager
async def inbox_pool_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Close the inbox's connections with the app (they open on the first event)."""
    yield
    pool: AsyncConnectionPool | None = getattr(app.state, "inbox_pool", None)
    if pool is not None:
        app.state.inbox_pool = None
        await pool.close()


async def _inbox_pool(app: FastAPI) -> AsyncConnectionPool:
    pool: AsyncConnectionPool | None = getattr(app.state, "inbox_pool", None)
    if pool is None:
        async with _pool_lock:
            pool = getattr(app.state, "inbox_pool", None)
            if pool is None:
                pool = app.state.inbox_pool = await open_async_pool(POOL_SIZE)
    return pool


@router.post(
    "/webhooks/stripe",
    summary="Stripe's webhook",
    responses={
        400: {"description": "Missing, malformed, wrong or stale signature, or not an event."},
        413: {"description": "The body is over the size limit."},
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
    stored = await store_event(await _inbox_pool(request.app), body, event, livemode=livemode)
    if stored.status == PENDING:  # committed: a worker may now claim it
        drain_wakeup.poke()
    return JSONResponse({"received": True, "status": stored.status, "duplicate": stored.duplicate})
