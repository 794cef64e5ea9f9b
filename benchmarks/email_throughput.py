"""Receipts rendered and delivered per second by one worker process, against a plain SMTP loop.

Needs the local PostgreSQL and Redis (as the tests do). Creates a throwaway database, starts a
counting SMTP server on 127.0.0.1 and one Celery worker process, queues N receipts through
billing.notifications exactly as the webhook handlers do, and times until all N arrived. The
baseline sends the same rendered receipt N times from a plain loop with smtplib, one connection
per message as the worker opens. Prints both rates and their ratio.

    .venv/bin/python benchmarks/email_throughput.py [--count 500] [--concurrency 2]
"""

import argparse
import os
import smtplib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class CountingHandler:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not deliver in time")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    database = f"pledges_bench_{run_id}"
    smtp_port = free_port()
    env = {
        "ENVIRONMENT": "development",
        "DATABASE_URL": ADMIN_URL.rsplit("/", 1)[0] + "/" + database,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_QUEUE": f"pledges-bench-{run_id}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "READER_LINK_SECRET": "bench-" + run_id,
        "NEWSROOM_NAME": "The Daily Bugle",
        "NEWSROOM_ADDRESS": "39th Street, New York",
    }
    os.environ.update(env)
    handler = CountingHandler()
    server = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    worker: subprocess.Popen[bytes] | None = None
    server.start()
    try:
        from billing.migrate import upgrade

        upgrade(env["DATABASE_URL"])
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
             "--pool=threads", f"--concurrency={args.concurrency}", "--loglevel=ERROR",
             "--without-heartbeat", "--without-gossip", "--without-mingle",
             "-Q", env["CELERY_QUEUE"]],
            env={**os.environ, **env}, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        queue_receipts(1).commit()  # warm-up: the worker is up and has imported everything
        wait_until(lambda: handler.received == 1, timeout=60)

        message = rendered_receipt()
        loop_before = plain_loop(message, smtp_port, args.count)
        session = queue_receipts(args.count)
        # The clock starts at the commit, which sends the tasks, as a webhook handler's would.
        started = time.perf_counter()
        session.commit()
        wait_until(lambda: handler.received == 1 + 2 * args.count, timeout=600)
        worker_seconds = time.perf_counter() - started
        session.close()
        loop_after = plain_loop(message, smtp_port, args.count)
        # The machine is shared: the baseline is the mean of a run before and one after.
        loop_seconds = (loop_before + loop_after) / 2
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.stop()
        from billing.db import reset_caches

        reset_caches()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    worker_rate = args.count / worker_seconds
    loop_rate = args.count / loop_seconds
    print(f"receipts: {args.count}, worker threads: {args.concurrency}")
    print(f"worker (claim, render, SMTP, mark sent): {worker_rate:8.1f} receipts/s")
    print(f"plain smtplib loop, same message:        {loop_rate:8.1f} messages/s")
    print(f"ratio worker / plain loop:               {worker_rate / loop_rate:8.2f}")


def plain_loop(message: Any, port: int, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.send_message(message)
    return time.perf_counter() - started


def queue_receipts(count: int) -> Any:
    """A session holding `count` paid invoices and their receipts, not yet committed."""
    from billing import notifications
    from billing.db import get_sessionmaker
    from billing.models import Payment, Pledge, Reader

    session = get_sessionmaker()()
    for _ in range(count):
        email = f"{uuid.uuid4().hex[:12]}@example.org"
        reader = Reader(id=uuid.uuid4(), email=email, name="Ada")
        session.add(reader)
        session.flush()  # no ORM relationships: the reader row must exist first
        pledge = Pledge(
            id=uuid.uuid4(), reader_id=reader.id, amount_minor=500, currency="eur",
            interval="month", status="active", locale="en",
        )  # fmt: skip
        session.add(pledge)
        session.flush()
        payment = Payment(
            pledge_id=pledge.id, stripe_invoice_id=f"in_bench_{uuid.uuid4().hex}",
            status="paid", amount_minor=500, currency="eur", paid_at=time_now(),
        )  # fmt: skip
        session.add(payment)
        session.flush()
        notifications.payment_succeeded(
            session, reader=reader, pledge=pledge, payment=payment, first=False
        )
    return session


def rendered_receipt() -> Any:
    from sqlalchemy import select

    from billing.db import session_scope
    from billing.models import EmailOutbox
    from billing.settings import get_settings
    from workers.emails import build_message

    with session_scope() as session:
        row = session.scalars(select(EmailOutbox).limit(1)).one()
        return build_message(session, row, get_settings())


def time_now() -> Any:
    from billing.db import utcnow

    return utcnow()


if __name__ == "__main__":
    main()
