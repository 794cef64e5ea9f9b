"""Sending Celery tasks by name, only once the transaction that made them necessary commits.

billing never imports workers: it names tasks by string and sends them through a producer-only
Celery app built from the same settings.
"""

import threading
import time
from functools import lru_cache
from typing import Any

import structlog
from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from billing.settings import get_settings

_PENDING_KEY = "pledges_tasks_after_commit"
log = structlog.get_logger()


def broker_transport_options(broker_url: str) -> dict[str, Any]:
    """Redis redelivers an unacked task after the visibility timeout: longer than any task runs.

    Other transports take no such option (kombu's SQLAlchemy one passes them to create_engine).
    """
    if broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": 3600}
    return {}


@lru_cache
def producer() -> Celery:
    settings = get_settings()
    app = Celery("pledges-producer", broker=settings.celery_broker_url)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        broker_connection_timeout=2,
        broker_transport_options=broker_transport_options(settings.celery_broker_url),
        # Fail fast when the broker is down: the database row is the durable copy.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
    )
    return app


def send_task(name: str, *args: Any, countdown: float | None = None) -> None:
    producer().send_task(name, args=args, queue=get_settings().celery_queue, countdown=countdown)


def enqueue_after_commit(session: Session, name: str, *args: Any) -> None:
    """Queue `name(*args)` to be sent after `session` commits; dropped if it rolls back.

    A broker that is down at that moment loses nothing: the rows stay in the database and the
    periodic sweeps pick them up.
    """
    pending: list[tuple[str, tuple[Any, ...]]] = session.info.setdefault(_PENDING_KEY, [])
    # Listening for the session's whole life, not `once`: SQLAlchemy keeps a fired `once`
    # listener registered, so listening again was a no-op and a session's second commit
    # sent nothing (the sweeps found those rows a minute later).
    if not event.contains(session, "after_commit", _send_pending):
        event.listen(session, "after_commit", _send_pending)
        event.listen(session, "after_rollback", _forget_pending)
    # A batch of events that queues one argument-less wake-up many times sends it once.
    if (name, args) not in pending:
        pending.append((name, args))


def _send_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, [])
    for name, args in pending:
        try:
            send_task(name, *args)
        except Exception:  # the broker is down: the rows wait in the database for the sweep
            log.warning("task_send_failed", task=name, args=args)


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


class Wakeup:
    """Sends one argument-less task after every poke, coalescing pokes that come close together.

    For a queue whose real content lives in the database: a thousand events stored in a second
    need a few wake-ups, not a thousand publishes. Every poke is followed by a send that starts
    after it (the flag is cleared before sending), so no committed row waits for the sweep
    unless the broker is down.
    """

    def __init__(self, name: str, interval: float = 0.2) -> None:
        self.name = name
        self.interval = interval
        self._poked = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        self._poked.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name=f"wakeup-{self.name}", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._poked.wait()
            self._poked.clear()
            try:
                send_task(self.name)
            except Exception:  # the broker is down: the rows wait in the database for the sweep
                log.warning("task_send_failed", task=self.name)
            time.sleep(self.interval)
