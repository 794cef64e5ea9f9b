"""Who may read reports (401/403) and what a bad request gets back: a clear 422, nothing else."""

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.apikeys import create_api_key, revoke_api_key
from billing.models import ApiKey
from tests.reports_ledger import api_key

ROUTES = [
    "/v1/reports/summary", "/v1/reports/revenue", "/v1/reports/movement",
    "/v1/reports/recovery", "/v1/reports/attribution", "/v1/reports/pledges",
    "/v1/reports/payments", "/v1/reports/payouts", "/v1/reports/cohorts", "/v1/reports/drift",
    "/v1/reports/journal?month=2026-10",
]  # fmt: skip


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Bearer rp_not-a-key-we-issued"],
)
def test_report_routes_refuse_requests_without_a_valid_key(
    client: TestClient, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.get(path, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["message"]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("role", ["finance", "admin"])
def test_both_roles_read_every_report(
    client: TestClient, db: Session, path: str, role: str
) -> None:
    key = api_key(db, role)

    response = client.get(path, headers={"Authorization": f"Bearer {key}"})

    assert response.status_code == 200, response.text


def test_a_revoked_key_is_refused_at_once(client: TestClient, db: Session) -> None:
    row, key = create_api_key(db, "finance")
    db.commit()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/reports/summary", headers=headers).status_code == 200

    assert revoke_api_key(db, row.id)
    db.commit()

    response = client.get("/v1/reports/summary", headers=headers)
    assert response.status_code == 401
    assert response.json()["message"] == "This API key is not valid or has been revoked."


def test_using_a_key_records_when_it_was_last_used(client: TestClient, db: Session) -> None:
    key = api_key(db, "finance")
    before = datetime.now(UTC)

    client.get("/v1/reports/summary", headers={"Authorization": f"Bearer {key}"})

    db.expire_all()
    last_used = db.scalars(select(ApiKey.last_used_at)).one()
    assert last_used is not None and last_used >= before


def test_finance_may_not_filter_payments_by_email(client: TestClient, db: Session) -> None:
    key = api_key(db, "finance")

    response = client.get(
        "/v1/reports/payments",
        headers={"Authorization": f"Bearer {key}"},
        params={"email": "someone@example.org"},
    )

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/v1/reports/revenue", {"from": "2026-13-01"}, "from must be a date like 2026-10-31."),
        ("/v1/reports/summary", {"to": "yesterday"}, "to must be a date like 2026-10-31."),
        ("/v1/reports/revenue", {"from": "2026-10-02", "to": "2026-10-01"},
         "from must be on or before to."),
        ("/v1/reports/movement", {"currency": "euro"},
         "currency must be a three-letter code we know, such as EUR."),
        ("/v1/reports/revenue", {"granularity": "hour"}, "granularity must be day, week or month."),
        ("/v1/reports/revenue", {"granularity": "day", "from": "2020-01-01", "to": "2026-01-01"},
         "A daily series covers at most 1000 days; ask for weeks or months."),
        ("/v1/reports/recovery", {"format": "xlsx"}, "format must be json or csv."),
        ("/v1/reports/pledges", {"status": "paid"},
         "status must be one of pending, active, past_due, paused, canceled, failed."),
        ("/v1/reports/payments", {"status": "active"},
         "status must be one of pending, paid, failed, refunded, void."),
        ("/v1/reports/pledges", {"interval": "weekly"},
         "interval must be one of month, year, once."),
        ("/v1/reports/pledges", {"limit": "0"}, "limit must be between 1 and 1000."),
        ("/v1/reports/attribution", {"top": "0"}, "top must be between 1 and 10000."),
        ("/v1/reports/payments", {"limit": "1001"}, "limit must be between 1 and 1000."),
        ("/v1/reports/pledges", {"cursor": "not-a-cursor"},
         "cursor is not one this API gave out; start again without it."),
        ("/v1/reports/payments", {"cursor": "WyIyMDI2LTEwLTAxVDAwOjAwOjAwKzAwOjAwIiwgIngiXQ"},
         "cursor is not one this API gave out."),
    ],
)  # fmt: skip
def test_bad_report_parameters_get_a_clear_422(
    client: TestClient, db: Session, path: str, params: dict[str, str], message: str
) -> None:
    key = api_key(db, "admin")

    response = client.get(path, headers={"Authorization": f"Bearer {key}"}, params=params)

    assert response.status_code == 422
    assert response.json()["message"] == message
    assert response.json()["detail"][0]["msg"] == message


def test_a_non_numeric_limit_is_a_validation_error(client: TestClient, db: Session) -> None:
    key = api_key(db, "finance")

    response = client.get(
        "/v1/reports/pledges", headers={"Authorization": f"Bearer {key}"}, params={"limit": "ten"}
    )

    assert response.status_code == 422
    assert response.json()["message"]
