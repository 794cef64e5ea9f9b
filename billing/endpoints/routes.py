"""`/v1/endpoints`: admins manage the newsroom's webhook endpoints, read deliveries, replay."""

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from billing.dependencies import get_session
from billing.endpoints import service
from billing.endpoints.schemas import (
    Delivery,
    DeliveryList,
    Endpoint,
    EndpointCreate,
    EndpointList,
    EndpointWithSecret,
    ReplayQueued,
    ReplayRequest,
)
from billing.endpoints.service import EndpointError
from billing.errors import error_body
from billing.reports.auth import Principal, report_reader
from billing.reports.params import ReportError
from billing.settings import get_settings


def admin_only(principal: Annotated[Principal, Depends(report_reader)]) -> Principal:
    """401 without a valid key (as for reports), 403 for a finance key."""
    if principal.role != "admin":
        raise ReportError("Managing webhook endpoints needs an admin key.", status_code=403)
    return principal


router = APIRouter(
    prefix="/v1/endpoints",
    tags=["endpoints"],
    dependencies=[Depends(admin_only)],
    responses={
        401: {"description": "No API key, or one that is unknown or revoked."},
        403: {"description": "Not an admin key."},
        404: {"description": "No endpoint with this id."},
    },
)
DbSession = Annotated[Session, Depends(get_session)]


def install_endpoints(app: FastAPI) -> None:
    app.include_router(router)

    @app.exception_handler(EndpointError)
    async def _endpoint_error(_request: Request, exc: EndpointError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, []), status_code=exc.status_code)


@router.post("", status_code=201, response_model=EndpointWithSecret)
def add_endpoint(body: EndpointCreate, session: DbSession) -> EndpointWithSecret:
    """Add an endpoint; the answer carries its signing secret, the only time it is shown."""
    created = service.add_endpoint(
        session, get_settings(), url=body.url, event_types=body.events,
        personal_data=body.personal_data, description=body.description,
    )  # fmt: skip
    session.commit()
    return EndpointWithSecret(**Endpoint.of(created.endpoint).model_dump(), secret=created.secret)


@router.get("", response_model=EndpointList)
def list_endpoints(session: DbSession) -> EndpointList:
    return EndpointList(items=[Endpoint.of(row) for row in service.list_endpoints(session)])


@router.get("/{endpoint_id}", response_model=Endpoint)
def get_endpoint(endpoint_id: int, session: DbSession) -> Endpoint:
    return Endpoint.of(service.get_endpoint(session, endpoint_id))


@router.post("/{endpoint_id}/disable", response_model=Endpoint)
def disable_endpoint(endpoint_id: int, session: DbSession) -> Endpoint:
    endpoint = service.disable_endpoint(session, endpoint_id=endpoint_id)
    session.commit()
    return Endpoint.of(endpoint)


@router.post("/{endpoint_id}/enable", response_model=Endpoint)
def enable_endpoint(endpoint_id: int, session: DbSession) -> Endpoint:
    endpoint = service.enable_endpoint(session, get_settings(), endpoint_id=endpoint_id)
    session.commit()
    return Endpoint.of(endpoint)


@router.post("/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret)
def rotate_secret(endpoint_id: int, session: DbSession) -> EndpointWithSecret:
    """A new secret (shown once); the old one also signs until `secret_rotated_until`."""
    rotated = service.rotate_secret(session, get_settings(), endpoint_id=endpoint_id)
    session.commit()
    return EndpointWithSecret(**Endpoint.of(rotated.endpoint).model_dump(), secret=rotated.secret)


@router.delete("/{endpoint_id}", status_code=204)
def remove_endpoint(endpoint_id: int, session: DbSession) -> None:
    service.remove_endpoint(session, endpoint_id=endpoint_id)
    session.commit()


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryList)
def deliveries(
    endpoint_id: int,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DeliveryList:
    """The delivery log, newest first: attempts, status, response time, the answer's start."""
    rows = service.delivery_log(session, endpoint_id=endpoint_id, limit=limit)
    return DeliveryList(items=[Delivery.of(delivery, event) for delivery, event in rows])


@router.post("/{endpoint_id}/replay", status_code=202, response_model=ReplayQueued)
def replay(endpoint_id: int, body: ReplayRequest, session: DbSession) -> ReplayQueued:
    since = body.since if body.since.tzinfo is not None else body.since.replace(tzinfo=UTC)
    queued = service.replay(session, endpoint_id=endpoint_id, since=since)
    session.commit()
    return ReplayQueued(queued=queued)
