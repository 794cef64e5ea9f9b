"""The inbox drained in batches by real worker processes: a worker killed mid-batch loses and
doubles nothing, and two workers share a backlog without applying any event twice."""

import signal
import subprocess
from collections.abc import Iterator

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.models import EmailOutbox, Payment, StripeEvent
from tests.conftest import REDIS_URL, CaughtMail, start_worker, stop_worker
from tests.integration.test_webhook_worker import backend_waiting_on_a_lock, wait_until
from tests.stripe_events import event, invoice, make_pledge, new_id, post_event

EVENTS = 30


@pytest.fixture
def batch_env(
    test_environment: dict[str, str], smtp_server: CaughtMail
) -> Iterator[dict[str, str]]:
    """Workers with small batches (several per backlog) and receipts to the test's SMTP."""
    redis.Redis.from_url(REDIS_URL).delete(test_environment["CELERY_QUEUE"])
    yield {**test_environment, "WEBHOOK_BATCH_SIZE": "10"}


def post_renewals(client: TestClient, subscriptions: list[str]) -> list[str]:
    """EVENTS paid invoices cycling through the subscriptions; their invoice ids."""
    invoice_ids = []
    for number in range(EVENTS):
        invoice_id = new_id("in")
        sub_id = subscriptions[number % len(subscriptions)]
        paid = invoice(invoice_id, sub_id, "cus_x", period_start=1_800_000_000 + number)
        assert post_event(client, event("invoice.paid", paid)).status_code == 200
        invoice_ids.append(invoice_id)
    return invoice_ids


def applied_once(db: Session, invoice_ids: list[str], caught: CaughtMail) -> None:
    db.expire_all()
    assert db.scalars(select(StripeEvent.attempts)).all() == [1] * EVENTS
    assert db.scalar(select(func.count()).select_from(Payment)) == EVENTS
    keys = db.scalars(select(EmailOutbox.dedupe_key)).all()
    assert sorted(keys) == sorted(f"receipt:{invoice_id}" for invoice_id in invoice_ids)
    wait_until(lambda: len(caught.messages) >= EVENTS, timeout=60, what="every receipt")
    wait_until(lambda: all_sent(db), what="every receipt marked sent")
    assert len(caught.messages) == EVENTS
    assert len({message["Message-ID"] for message in caught.messages}) == EVENTS


def all_handled(db: Session) -> bool:
    db.expire_all()
    statuses = db.scalars(select(StripeEvent.status)).all()
    db.commit()
    return statuses == ["handled"] * EVENTS


def all_sent(db: Session) -> bool:
    db.expire_all()
    statuses = db.scalars(select(EmailOutbox.status)).all()
    db.commit()
    return statuses == ["sent"] * EVENTS


def test_worker_killed_mid_batch_applies_every_event_once_and_queues_every_receipt_once(
    batch_env: dict[str, str], smtp_server: CaughtMail, client: TestClient, db: Session
) -> None:
    pledges = [make_pledge(db, subscription_id=new_id("sub")) for _ in range(3)]
    invoice_ids = post_renewals(client, [str(pledge.stripe_subscription_id) for pledge in pledges])
    database_url = batch_env["DATABASE_URL"]
    worker = start_worker(batch_env)
    try:
        with psycopg.connect(database_url) as blocker:
            # The first batch applies two events, then waits on the third pledge: kill it there.
            blocker.execute("SELECT id FROM pledges WHERE id = %s FOR UPDATE", (pledges[2].id,))
            wait_until(lambda: backend_waiting_on_a_lock(database_url), what="the batch")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            blocker.rollback()
        wait_until(lambda: not backend_waiting_on_a_lock(database_url), what="the dead batch")
        db.expire_all()
        assert db.scalar(select(func.count()).select_from(Payment)) == 0
        assert db.scalar(select(func.count()).select_from(EmailOutbox)) == 0

        worker = start_worker(batch_env)  # a starting worker drains the backlog by itself
        wait_until(lambda: all_handled(db), timeout=60, what="every event handled")
        applied_once(db, invoice_ids, smtp_server)
    finally:
        stop_worker(worker)


def test_two_workers_share_a_backlog_and_apply_each_event_once(
    batch_env: dict[str, str], smtp_server: CaughtMail, client: TestClient, db: Session
) -> None:
    pledges = [make_pledge(db, subscription_id=new_id("sub")) for _ in range(6)]
    invoice_ids = post_renewals(client, [str(pledge.stripe_subscription_id) for pledge in pledges])
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers = [start_worker(batch_env), start_worker(batch_env)]
        wait_until(lambda: all_handled(db), timeout=60, what="every event handled")
        applied_once(db, invoice_ids, smtp_server)
    finally:
        for worker in workers:
            stop_worker(worker)
