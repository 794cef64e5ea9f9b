"""Liveness and readiness: is the process up, and can it reach the database and the broker."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu.connection import Connection
from sqlalchemy import text

from billing.db import get_engine
from billing.settings import get_settings

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database or the broker is down."}})
def readyz() -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means not ready; the class name says which
        checks["database"] = f"unavailable: {type(error).__name__}"
    try:
        broker_url = get_settings().celery_broker_url
        with Connection(broker_url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as error:
        checks["broker"] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
