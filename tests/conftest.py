"""Shared fixtures: a fresh PostgreSQL database built by the migrations, localstripe, the app.

Every test session gets its own database and Celery queue, so parallel runs on one machine
(several checkouts, CI) never see each other's rows or tasks.
"""

import contextlib
import email
import email.policy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from billing import local_postgres
from billing.db import Base, get_engine, get_sessionmaker, reset_caches
from billing.dev import wait_for_port

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]
TEST_DB = f"pledges_test_{RUN_ID}"
# Outside development, signing secrets must be 32 characters or more.
WEBHOOK_SECRET = "whsec_test_" + RUN_ID + uuid.uuid4().hex
RATE_LIMIT_KEY_PREFIX = "pledges-test-limits-" + RUN_ID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url_named(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """TEST_POSTGRES_ADMIN_URL, else this machine's PostgreSQL on 5432, else an embedded one."""
    configured = os.environ.get("TEST_POSTGRES_ADMIN_URL")
    if configured:
        yield configured
        return
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), 1):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    folder = Path(tempfile.mkdtemp(prefix="pledges-test-postgres-"))
    server = local_postgres.start(folder / "data", free_port())
    try:
        yield server.url()
    finally:
        local_postgres.stop(server.datadir)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def scratch_folder() -> Iterator[Path]:
    """A fresh folder outside pytest's tmp_path, for embedded PostgreSQL servers: other pytest
    sessions on the same machine prune tmp_path's numbered folders under a running server."""
    folder = Path(tempfile.mkdtemp(prefix="pledges-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "billing.localstripe_server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{TEST_DB}"')
    url = database_url_named(postgres_admin_url, TEST_DB)
    try:
        yield url
    finally:
        reset_caches()
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture(scope="session")
def test_environment(database_url: str, localstripe_url: str) -> Iterator[dict[str, str]]:
    """The settings every test and every process a test starts reads."""
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_QUEUE": f"pledges-test-{RUN_ID}",
        "REDIS_URL": REDIS_URL,
        "STRIPE_API_KEY": "sk_test_" + RUN_ID,
        "STRIPE_PUBLISHABLE_KEY": "pk_test_" + RUN_ID,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": localstripe_url,
        "PUBLIC_URL": "http://127.0.0.1:8000",
        "WIDGET_ORIGINS": "https://news.example",
        "READER_LINK_SECRET": "reader-links-" + RUN_ID + uuid.uuid4().hex,
        "RATE_LIMIT_KEY_PREFIX": RATE_LIMIT_KEY_PREFIX,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reset_caches()
    from billing.migrate import upgrade
    from billing.stripe_gateway import get_gateway

    get_gateway.cache_clear()
    upgrade(database_url)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_gateway.cache_clear()
    reset_caches()


@pytest.fixture
def db(test_environment: dict[str, str]) -> Iterator[Session]:
    """A session on the test database; every table is emptied after the test."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        with get_engine().begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def client(db: Session) -> Iterator[TestClient]:
    from billing.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


class BrowserStripe:
    """Does what Stripe.js does in the reader's browser, against localstripe."""

    def __init__(self, api_base: str, publishable_key: str) -> None:
        self.api_base = api_base
        self.publishable_key = publishable_key

    def create_payment_method(self, card_number: str) -> str:
        """`stripe.createPaymentMethod`: card details to a PaymentMethod id, nothing charged."""
        card = {"number": card_number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        response = httpx.post(
            f"{self.api_base}/js.stripe.com/v3/payment_methods",
            json={"key": self.publishable_key, "type": "card", "card": card},
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def handle_next_action(self, client_secret: str, success: bool = True) -> dict[str, Any]:
        """`stripe.handleNextAction`: the reader completes or fails 3-D Secure."""
        intent_id = client_secret.split("_secret_")[0]
        body = {"key": self.publishable_key, "client_secret": client_secret}
        if intent_id.startswith("seti_"):
            action = "confirm" if success else "cancel"
            url = f"{self.api_base}/v1/setup_intents/{intent_id}/{action}"
            return dict(httpx.post(url, json=body).json())
        url = f"{self.api_base}/v1/payment_intents/{intent_id}/_authenticate"
        response = httpx.post(url, params={"success": "true" if success else "false"}, json=body)
        return dict(response.json())

    def try_card_at_stripe(self, client_secret: str, card_number: str) -> int:
        """What a card tester does with a leaked SetupIntent secret: confirm a card at Stripe."""
        intent_id = client_secret.split("_secret_")[0]
        card = {"number": card_number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
        response = httpx.post(
            f"{self.api_base}/v1/setup_intents/{intent_id}/confirm",
            json={
                "key": self.publishable_key,
                "client_secret": client_secret,
                "payment_method_data": {"type": "card", "card": card},
            },
        )
        return response.status_code


@pytest.fixture
def browser_stripe(test_environment: dict[str, str]) -> BrowserStripe:
    return BrowserStripe(
        test_environment["STRIPE_API_BASE"], test_environment["STRIPE_PUBLISHABLE_KEY"]
    )


@pytest.fixture
def stripe_api(test_environment: dict[str, str]) -> httpx.Client:
    """A raw client on localstripe, to check what Stripe holds independently of our gateway."""
    return httpx.Client(
        base_url=test_environment["STRIPE_API_BASE"],
        auth=(test_environment["STRIPE_API_KEY"], ""),
    )


def start_worker(environment: dict[str, str], concurrency: int = 2) -> subprocess.Popen[bytes]:
    """A real Celery worker process on this run's queue, as `pledges worker` runs it."""
    command = [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--pool=threads", f"--concurrency={concurrency}", "--loglevel=WARNING",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
        "-Q", environment["CELERY_QUEUE"],
    ]  # fmt: skip
    return subprocess.Popen(command, env={**os.environ, **environment})


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def celery_worker_process(
    test_environment: dict[str, str], db: Session
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on this run's queue, stopped after the test.

    Asks for `db` so that the worker stops before `db` empties the tables: a worker still
    applying an event held locks that the TRUNCATE waited on, and deadlocked with it.
    """
    process = start_worker(test_environment)
    try:
        yield process
    finally:
        stop_worker(process)


class CaughtMail:
    """Messages an SMTP server on 127.0.0.1 received, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


@contextlib.contextmanager
def serving_smtp(
    handler: Any, test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """`handler` answers as an SMTP server (aiosmtpd) on a free port, where SMTP_HOST/SMTP_PORT
    point, for this process and the workers a test starts."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    test_environment["SMTP_HOST"], test_environment["SMTP_PORT"] = "127.0.0.1", str(port)
    reset_caches()
    try:
        yield
    finally:
        controller.stop()
        test_environment.pop("SMTP_HOST"), test_environment.pop("SMTP_PORT")
        monkeypatch.undo()
        reset_caches()


@pytest.fixture
def smtp_server(
    test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CaughtMail]:
    """A real SMTP server that takes every message; the test reads them parsed."""
    caught = CaughtMail()
    with serving_smtp(caught, test_environment, monkeypatch):
        yield caught


@pytest.fixture(autouse=True)
def _forget_rate_limits() -> Iterator[None]:
    """Each test starts with clean rate-limit counters (this run's keys only)."""
    yield
    import redis

    connection = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(connection.scan_iter(match=f"{RATE_LIMIT_KEY_PREFIX}*", count=1000))
        if keys:
            connection.delete(*keys)
    finally:
        connection.close()
