"""GET /metrics, for Prometheus, behind the same API keys as the reports."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from billing.metrics.registry import render_metrics
from billing.reports.auth import Principal, report_reader

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={401: {"description": "No valid API key."}},
)
async def metrics(_principal: Annotated[Principal, Depends(report_reader)]) -> Response:
    return Response(await run_in_threadpool(render_metrics), media_type=CONTENT_TYPE_LATEST)
