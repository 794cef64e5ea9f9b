"""Outgoing webhooks through a real Celery worker: order per reader, and at least once when the
worker is killed mid-delivery."""

import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.endpoints import events as outgoing
from billing.endpoints.service import add_endpoint
from billing.models import WebhookDelivery
from billing.settings import get_settings
from tests.conftest import REDIS_URL, start_worker, stop_worker
from tests.ledger_rows import make_reader
from tests.outgoing_receiver import Receiver, running
from workers.outgoing import sweep_deliveries

TIMEOUT = 40.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def worker_settings(
    test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Loopback allowed, short backoff and lease; this run's queue starts empty."""
    values = {
        "OUTGOING_WEBHOOK_ALLOW_PRIVATE": "true",
        "OUTGOING_WEBHOOK_RETRY_BASE_SECONDS": "0.3",
        "OUTGOING_WEBHOOK_LEASE_SECONDS": "11",
    }
    test_environment.update(values)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    redis.Redis.from_url(REDIS_URL).delete(test_environment["CELERY_QUEUE"])
    yield test_environment
    for name in values:
        test_environment.pop(name, None)
    get_settings.cache_clear()


def statuses(db: Session) -> list[str]:
    db.expire_all()
    rows = list(db.scalars(select(WebhookDelivery.status).order_by(WebhookDelivery.id)))
    db.commit()
    return rows


def test_a_readers_later_events_wait_while_an_earlier_one_is_retried(
    db: Session, worker_settings: dict[str, str]
) -> None:
    def first_attempt_fails(number: int, _event: dict[str, object]) -> int:
        return 500 if number == 0 else 204

    with running(Receiver(status_for=first_attempt_fails)) as receiver:
        add_endpoint(db, get_settings(), url=receiver.url, event_types="*")
        reader = make_reader(db)
        for field in ("email", "name", "locale"):
            outgoing.reader_updated(db, reader=reader, changed=[field])
            db.commit()  # three transactions, as three ledger changes would be
        # A retry slow enough that, unordered, the later two would certainly overtake it.
        worker = start_worker(
            {**worker_settings, "OUTGOING_WEBHOOK_RETRY_BASE_SECONDS": "3"}, concurrency=4
        )
        try:
            wait_for(lambda: statuses(db) == ["succeeded"] * 3, "every delivery")
        finally:
            stop_worker(worker)

    changed = [event["data"]["reader"]["changed"] for event in receiver.events()]  # type: ignore[index]
    # The first attempt of "email" failed; "name" and "locale" waited for its retry.
    assert changed == [["email"], ["email"], ["name"], ["locale"]]
    retried = receiver.requests[1].at - receiver.requests[0].at
    assert retried >= 3


def test_worker_killed_mid_delivery_delivers_again_with_the_same_webhook_id(
    db: Session, worker_settings: dict[str, str]
) -> None:
    with running(Receiver(delay_for=lambda number: 20.0 if number == 0 else 0.0)) as receiver:
        added = add_endpoint(db, get_settings(), url=receiver.url, event_types="*")
        outgoing.reader_updated(db, reader=make_reader(db), changed=["email"])
        db.commit()
        first = start_worker(worker_settings, concurrency=4)
        second: subprocess.Popen[bytes] | None = None
        try:
            wait_for(lambda: receiver.count() == 1, "the worker to be mid-delivery")
            first.kill()  # SIGKILL: no chance to record anything
            first.wait()
            assert statuses(db) == ["delivering"]

            second = start_worker(worker_settings, concurrency=4)
            # The periodic sweep hands the delivery out again once the dead worker's lease ends.
            wait_for(lambda: sweep_deliveries() > 0, "the lease to run out", timeout=20)
            wait_for(lambda: statuses(db) == ["succeeded"], "the delivery after the restart")
        finally:
            stop_worker(first)
            if second is not None:
                stop_worker(second)

    assert receiver.count() == 2
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert len(ids) == 1
    receiver.requests[1].verify(added.secret)
    db.expire_all()
    assert db.scalars(select(WebhookDelivery.attempts)).one() == 2
