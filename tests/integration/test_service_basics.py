"""Health checks, CORS for the widget, request size limits and the CLI."""

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.apikeys import find_active_key
from billing.db import reset_caches
from billing.models import ApiKey
from tests.conftest import free_port


def test_healthz_answers_without_touching_anything(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_the_database_and_the_broker(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_down(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing.app import create_app

    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    reset_caches()
    try:
        with TestClient(create_app()) as client:
            response = client.get("/readyz")
    finally:
        monkeypatch.undo()
        reset_caches()

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("unavailable")


def test_widget_origin_may_call_the_api_and_others_may_not(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,idempotency-key"}  # fmt: skip

    allowed = client.options("/v1/pledges", headers={"Origin": "https://news.example", **preflight})
    refused = client.options("/v1/pledges", headers={"Origin": "https://evil.example", **preflight})

    assert allowed.headers["access-control-allow-origin"] == "https://news.example"
    assert "access-control-allow-origin" not in refused.headers


def test_chunked_body_over_the_limit_is_refused(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 8192

    response = client.post(
        "/v1/pledges", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413


def test_openapi_documents_the_public_contract(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {"/v1/pledges", "/v1/pledges/{pledge_id}/confirm", "/healthz", "/readyz"} <= set(paths)


def test_apikey_create_prints_the_key_alone_on_the_last_line_and_stores_a_hash(
    db: Session, test_environment: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "billing.cli", "apikey", "create", "--role", "finance"],
        capture_output=True, text=True, env={**test_environment, "PATH": "/usr/bin:/bin"},
        check=True,
    )  # fmt: skip

    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("rp_") and " " not in key
    row = db.scalars(select(ApiKey)).one()
    assert row.role == "finance" and row.key_hash != key and key not in row.prefix[:-1] + "x"
    assert find_active_key(db, key) is not None
    assert find_active_key(db, key + "x") is None


def test_apikey_create_refuses_an_unknown_role(
    db: Session, test_environment: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "billing.cli", "apikey", "create", "--role", "owner"],
        capture_output=True, text=True, env={**test_environment, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip

    assert result.returncode != 0
    assert "must be one of finance, admin" in result.stderr
    assert db.scalars(select(ApiKey)).all() == []


def test_db_upgrade_refuses_a_database_other_than_postgresql(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "billing.cli", "db", "upgrade"],
        capture_output=True, text=True,
        env={"DATABASE_URL": f"sqlite:///{tmp_path}/old.db", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip

    assert result.returncode != 0
    assert "DATABASE_URL must be a postgresql:// URL" in result.stderr
