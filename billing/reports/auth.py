"""Who is asking for a report: an API key from `Authorization: Bearer` or the dashboard cookie.

Roles and what they see:
- finance: every report and list, with Stripe ids but no reader's email or name.
- admin: the same plus readers' email and name in lists, and filtering lists by email.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update

from billing.apikeys import find_active_key
from billing.db import get_sessionmaker, utcnow
from billing.models import ApiKey
from billing.reports.params import ReportError

DASHBOARD_COOKIE = "pledges_reports_key"
ROLES_FOR_PERSONAL_DATA = frozenset({"admin"})
# Recording every request would turn each report into a write; once a minute is enough to audit.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    key_id: int
    role: str

    @property
    def sees_personal_data(self) -> bool:
        return self.role in ROLES_FOR_PERSONAL_DATA


def _unauthorized(message: str) -> ReportError:
    return ReportError(message, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _unauthorized("Send the API key as: Authorization: Bearer <key>.")
        return key.strip()
    return request.cookies.get(DASHBOARD_COOKIE)


def authenticate(key: str | None) -> Principal:
    if not key:
        raise _unauthorized("An API key is required: send Authorization: Bearer <key>.")
    with get_sessionmaker().begin() as session:
        row = find_active_key(session, key)
        if row is None:
            raise _unauthorized("This API key is not valid or has been revoked.")
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_PRECISION:
            session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        return Principal(key_id=row.id, role=row.role)


# Declared so the OpenAPI schema shows the scheme; the header itself is read by presented_key.
bearer_scheme = HTTPBearer(
    auto_error=False, description="An API key from `pledges apikey create --role finance`."
)


def report_reader(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    """Dependency for every report route: 401 without a valid key.

    Both roles read every report; what an admin alone may do (see readers' personal data) is
    checked where it is asked for, with a 403.
    """
    return authenticate(presented_key(request))
