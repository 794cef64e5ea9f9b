"""Processing in a real Celery worker on Redis: duplicates, a killed worker, a broker outage."""

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.db import reset_caches
from billing.models import EmailOutbox, Payment, StripeEvent
from billing.task_queue import producer
from tests.conftest import REDIS_URL, free_port, start_worker, stop_worker
from tests.stripe_events import event, invoice, make_pledge, new_id, post_event, stored_event
from webhooks.tasks import sweep_events


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def count(db: Session, model: type[Any]) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def statuses(db: Session) -> list[str]:
    db.expire_all()
    return list(db.scalars(select(StripeEvent.status).order_by(StripeEvent.id)))


@pytest.fixture
def empty_queue(test_environment: dict[str, str]) -> None:
    """Tasks other tests queued without a worker would otherwise run here."""
    redis.Redis.from_url(REDIS_URL).delete(test_environment["CELERY_QUEUE"])


@pytest.fixture
def sweep_at_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WEBHOOK_SWEEP_AFTER_SECONDS", "0")
    reset_caches()
    yield
    monkeypatch.undo()
    reset_caches()


def test_same_event_delivered_five_times_concurrently_makes_one_payment(
    empty_queue: None,
    celery_worker_process: subprocess.Popen[bytes],
    client: TestClient,
    db: Session,
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    paid = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"))

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(lambda _: post_event(client, paid), range(5)))

    assert [r.status_code for r in responses] == [200] * 5
    assert count(db, StripeEvent) == 1
    wait_until(lambda: statuses(db) == ["handled"], what="the event to be handled")
    queue = os.environ["CELERY_QUEUE"]
    wait_until(lambda: redis.Redis.from_url(REDIS_URL).llen(queue) == 0, what="an empty queue")
    assert count(db, Payment) == 1
    assert count(db, EmailOutbox) == 1


def backend_waiting_on_a_lock(database_url: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_worker_killed_mid_handler_processes_the_event_once_after_restart(
    empty_queue: None,
    sweep_at_once: None,
    test_environment: dict[str, str],
    client: TestClient,
    db: Session,
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id)
    paid = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"))
    database_url = test_environment["DATABASE_URL"]
    worker = start_worker(test_environment)
    try:
        with psycopg.connect(database_url) as blocker:
            # Hold the pledge so the worker's handler stops halfway, inside its transaction.
            blocker.execute("SELECT id FROM pledges WHERE id = %s FOR UPDATE", (pledge.id,))
            assert post_event(client, paid).status_code == 200
            wait_until(lambda: backend_waiting_on_a_lock(database_url), what="the handler")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            blocker.rollback()
        wait_until(lambda: not backend_waiting_on_a_lock(database_url), what="the dead handler")
        assert statuses(db) == ["pending"] and count(db, Payment) == 0

        worker = start_worker(test_environment)
        assert sweep_events() == 1
        wait_until(lambda: statuses(db) == ["handled"], what="the swept event")
    finally:
        stop_worker(worker)
    assert count(db, Payment) == 1
    assert stored_event(db, paid["id"]).attempts == 1


class RedisServer:
    """A throwaway redis-server on a free port, to stop and start like a broker outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._answers, timeout=10, what="redis-server")

    def stop(self) -> None:
        if self.process is not None:
            stop_worker(self.process)
            self.process = None

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url).ping())
        except redis.ConnectionError:
            return False


@pytest.fixture
def own_broker(
    monkeypatch: pytest.MonkeyPatch, test_environment: dict[str, str]
) -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    monkeypatch.setenv("CELERY_BROKER_URL", server.url)
    monkeypatch.setenv("WEBHOOK_SWEEP_AFTER_SECONDS", "0")
    reset_caches()
    producer.cache_clear()
    try:
        yield server
    finally:
        server.stop()
        monkeypatch.undo()
        reset_caches()
        producer.cache_clear()


def test_events_arriving_while_the_broker_is_down_are_processed_when_it_returns(
    own_broker: RedisServer,
    test_environment: dict[str, str],
    client: TestClient,
    db: Session,
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    invoices = [
        invoice(new_id("in"), sub_id, "cus_x", period_start=1_800_000_000 + i) for i in range(3)
    ]
    worker = start_worker({**test_environment, "CELERY_BROKER_URL": own_broker.url})
    try:
        own_broker.stop()
        responses = [post_event(client, event("invoice.paid", paid)) for paid in invoices]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert statuses(db) == ["pending"] * 3

        own_broker.start()
        assert sweep_events() == 3
        wait_until(lambda: statuses(db) == ["handled"] * 3, timeout=60, what="the events")
    finally:
        stop_worker(worker)
    assert count(db, Payment) == 3


def test_event_about_an_object_not_known_yet_is_retried_until_it_applies(
    empty_queue: None, test_environment: dict[str, str], client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    paid = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"))
    worker = start_worker({**test_environment, "WEBHOOK_RETRY_BASE_SECONDS": "0.5"})
    try:
        post_event(client, paid)
        wait_until(lambda: stored_event(db, paid["id"]).attempts >= 1, what="a first attempt")
        assert stored_event(db, paid["id"]).status == "pending"
        assert "not in Stripe yet" in (stored_event(db, paid["id"]).last_error or "")

        make_pledge(db, subscription_id=sub_id)  # the confirm call commits its pledge

        wait_until(lambda: statuses(db) == ["handled"], what="a retry that applies")
    finally:
        stop_worker(worker)
    assert count(db, Payment) == 1
