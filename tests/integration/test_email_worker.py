"""The outbox through a real Celery worker and a real SMTP server: duplicates, outages, crashes."""

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import time_machine
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import utcnow
from billing.models import EmailOutbox
from billing.settings import get_settings
from billing.task_queue import send_task
from tests.conftest import REDIS_URL, CaughtMail, free_port, start_worker, stop_worker
from tests.ledger_rows import make_payment, make_pledge, make_reader
from workers.emails import sweep_outbox

TIMEOUT = 40.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def outbox_row(db: Session) -> EmailOutbox:
    db.expire_all()
    row = db.scalars(select(EmailOutbox)).one()
    db.commit()  # end the read so the next poll sees the worker's commits
    return row


def queue_receipt(db: Session) -> str:
    reader = make_reader(db)
    pledge = make_pledge(db, reader)
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)
    db.commit()
    return f"receipt:{payment.stripe_invoice_id}"


@pytest.fixture
def worker_settings(
    test_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Short retries and leases for the worker this test starts; its queue starts empty."""
    values = {"EMAIL_RETRY_BASE_SECONDS": "0.3", "EMAIL_SEND_LEASE_SECONDS": "3"}
    test_environment.update(values)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    # Sends queued by in-process tests went to this run's queue with no worker to take them.
    redis.Redis.from_url(REDIS_URL).delete(test_environment["CELERY_QUEUE"])
    yield test_environment
    for name in values:
        test_environment.pop(name, None)
    get_settings.cache_clear()


def test_invoice_paid_three_times_and_its_task_redelivered_sends_one_receipt(
    db: Session,
    smtp_server: CaughtMail,
    worker_settings: dict[str, str],
    celery_worker_process: subprocess.Popen[bytes],
) -> None:
    reader = make_reader(db)
    pledge = make_pledge(db, reader)
    payment = make_payment(db, pledge)
    for _ in range(3):
        notifications.payment_succeeded(
            db, reader=reader, pledge=pledge, payment=payment, first=True
        )
        db.commit()
    key = f"receipt:{payment.stripe_invoice_id}"
    for _ in range(3):  # the broker delivering the same send more than once
        send_task(notifications.SEND_EMAIL_TASK, key)

    wait_for(lambda: outbox_row(db).status == "sent", "the receipt to be sent")
    queue = redis.Redis.from_url(REDIS_URL)
    wait_for(lambda: queue.llen(worker_settings["CELERY_QUEUE"]) == 0, "the queue to drain")
    time.sleep(1.0)  # let the last duplicate finish; it must find the row sent

    assert len(smtp_server.messages) == 1
    assert outbox_row(db).attempts == 1


def test_smtp_server_down_for_the_first_attempts_delivers_later_once(
    db: Session,
    worker_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()  # nothing listens here yet
    worker_settings.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)})
    worker = start_worker(worker_settings)
    caught = CaughtMail()
    server = Controller(caught, hostname="127.0.0.1", port=port)
    try:
        queue_receipt(db)
        wait_for(lambda: outbox_row(db).attempts >= 2, "two failed attempts")
        row = outbox_row(db)
        assert row.status in ("pending", "sending") and "Connection" in (row.last_error or "")

        server.start()
        wait_for(lambda: outbox_row(db).status == "sent", "delivery once SMTP is back")
    finally:
        stop_worker(worker)
        server.stop()
        worker_settings.pop("SMTP_HOST"), worker_settings.pop("SMTP_PORT")

    assert len(caught.messages) == 1
    assert outbox_row(db).last_error is None


class StallingMail(CaughtMail):
    """Holds the first message in DATA until released, then refuses it: a send cut off midway."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.stalled.is_set():
            self.stalled.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 connection lost before the message was accepted"
        return await super().handle_DATA(server, session, envelope)


def test_worker_killed_mid_send_delivers_one_mail_after_restart(
    db: Session, worker_settings: dict[str, str]
) -> None:
    caught = StallingMail()
    port = free_port()
    server = Controller(caught, hostname="127.0.0.1", port=port)
    server.start()
    worker_settings.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)})
    first_worker = start_worker(worker_settings)
    second_worker: subprocess.Popen[bytes] | None = None
    try:
        queue_receipt(db)
        wait_for(caught.stalled.is_set, "the worker to be in the middle of sending")
        first_worker.kill()
        first_worker.wait()
        caught.release.set()
        assert (outbox_row(db).status, outbox_row(db).attempts) == ("sending", 1)

        second_worker = start_worker(worker_settings)
        # The periodic sweep hands the row out again once the dead worker's lease has run out.
        wait_for(lambda: sweep_outbox() > 0, "the lease to expire", timeout=15)
        wait_for(lambda: outbox_row(db).status == "sent", "delivery after the restart")
    finally:
        stop_worker(first_worker)
        if second_worker is not None:
            stop_worker(second_worker)
        server.stop()
        worker_settings.pop("SMTP_HOST"), worker_settings.pop("SMTP_PORT")

    assert len(caught.messages) == 1
    assert outbox_row(db).attempts == 2


def test_mail_committed_while_the_broker_was_down_is_sent_after_the_sweep(
    db: Session,
    smtp_server: CaughtMail,
    worker_settings: dict[str, str],
    celery_worker_process: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing.task_queue import producer

    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    get_settings.cache_clear()
    producer.cache_clear()
    try:
        queue_receipt(db)  # the row commits; sending its task fails and is only logged
    finally:
        monkeypatch.setenv("CELERY_BROKER_URL", REDIS_URL)
        get_settings.cache_clear()
        producer.cache_clear()
    assert outbox_row(db).status == "pending"

    # A minute later the periodic sweep finds the row whose task never reached a worker.
    with time_machine.travel(utcnow() + timedelta(minutes=2), tick=False):
        assert sweep_outbox() == 1
    wait_for(lambda: outbox_row(db).status == "sent", "the swept mail to be sent")
    assert len(smtp_server.messages) == 1


def test_batched_sends_use_the_same_message_id_as_single_sends(
    db: Session, smtp_server: CaughtMail
) -> None:
    from workers.emails import deliver_due, message_id_for

    key = queue_receipt(db)

    assert deliver_due(get_settings(), 10) == 1

    assert smtp_server.messages[0]["Message-ID"] == message_id_for(key, get_settings())
    assert outbox_row(db).message_id == message_id_for(key, get_settings())
    assert outbox_row(db).status == "sent"
