"""Receipts rendered and delivered per second by `pledges worker`, against a plain SMTP loop.

Needs the local PostgreSQL and Redis (as the tests do). Creates a throwaway database, starts a
counting SMTP server (aiosmtpd) in a process of its own and `pledges worker` as the README runs
it (its defaults: 2 threads, beat, INFO logs as JSON on stdout), queues N receipts through
billing.notifications exactly as the webhook handlers do, and times from the commit until the
server has all N. The baseline is the best plain loop: the same N messages, rendered beforehand,
sent with smtplib over one connection (timed just before and just after the worker, the mean
taken). For comparison with earlier figures it also prints a loop that opens a connection per
message. The machine is shared, so this runs a few rounds and prints the median ratio.

    PYTHONPATH=. .venv/bin/python -u benchmarks/email_throughput.py [--count 500] [--rounds 3]
"""

import argparse
import multiprocessing
import os
import smtplib
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def serve_smtp(port: int, received: "Synchronized[int]", ready: Any) -> None:
    """A counting SMTP server, in its own process so that it does not share a GIL with the
    plain loop (which would slow the baseline down and flatter the worker)."""
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
            with received.get_lock():
                received.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not deliver in time")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
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
    spawn = multiprocessing.get_context("spawn")
    received = spawn.Value("i", 0)
    ready = spawn.Event()
    server = spawn.Process(target=serve_smtp, args=(smtp_port, received, ready), daemon=True)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    worker: subprocess.Popen[bytes] | None = None
    server.start()
    try:
        ready.wait(30)
        from billing.migrate import upgrade

        upgrade(env["DATABASE_URL"])
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        # As the README starts it; its JSON log lines go where a container's stdout would.
        worker = subprocess.Popen(
            [sys.executable, "-m", "billing.cli", "worker"], env={**os.environ, **env}, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        queue_receipts(1).commit()  # warm-up: the worker is up and has imported everything
        wait_until(lambda: received.value == 1, timeout=60)
        rounds = [one_round(args.count, smtp_port, received) for _ in range(args.rounds)]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.kill()
        from billing.db import reset_caches

        reset_caches()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    print(f"receipts: {args.count} per round, {args.rounds} rounds; `pledges worker` (2 threads, "
          "beat, INFO logs); aiosmtpd in its own process")  # fmt: skip
    for number, (worker_rate, best_rate, each_rate) in enumerate(rounds, 1):
        print(
            f"round {number}: worker {worker_rate:6.1f} receipts/s; plain loop, 1 connection "
            f"{best_rate:6.1f}/s (a connection per message {each_rate:6.1f}/s)"
        )
    best = statistics.median(worker / loop for worker, loop, _each in rounds)
    each = statistics.median(worker / loop for worker, _best, loop in rounds)
    print(f"ratio worker / best plain loop (median of rounds): {best:5.2f} (goal >= 0.5)")
    print(f"  worker / a connection per message (old baseline): {each:5.2f}")


def one_round(count: int, port: int, received: "Synchronized[int]") -> tuple[float, ...]:
    """Rates of the worker, the plain loop over one connection and the loop opening one per
    message; each loop's time is the mean of a run just before the worker's and one after."""
    session = queue_receipts(count)
    messages = rendered(session)
    best_before = one_connection(messages, port)
    each_before = connection_per_message(messages, port)
    sent_before = received.value
    # The clock starts at the commit, which sends the task, as a webhook handler's would.
    started = time.perf_counter()
    session.commit()
    wait_until(lambda: received.value == sent_before + count, timeout=600)
    worker_seconds = time.perf_counter() - started
    session.close()
    best_after = one_connection(messages, port)
    each_after = connection_per_message(messages, port)
    return (
        count / worker_seconds,
        count / ((best_before + best_after) / 2),
        count / ((each_before + each_after) / 2),
    )


def one_connection(messages: list[EmailMessage], port: int) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for message in messages:
            smtp.send_message(message)
    return time.perf_counter() - started


def connection_per_message(messages: list[EmailMessage], port: int) -> float:
    started = time.perf_counter()
    for message in messages:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.send_message(message)
    return time.perf_counter() - started


def queue_receipts(count: int) -> Any:
    """A session holding `count` paid invoices and their receipts, not yet committed."""
    from billing import notifications
    from billing.db import get_sessionmaker, utcnow
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
            status="paid", amount_minor=500, currency="eur", paid_at=utcnow(),
        )  # fmt: skip
        session.add(payment)
        session.flush()
        notifications.payment_succeeded(
            session, reader=reader, pledge=pledge, payment=payment, first=False
        )
    return session


def rendered(session: Any) -> list[EmailMessage]:
    """The messages the worker will send for the receipts `session` queued (not committed)."""
    from sqlalchemy import select

    from billing.models import EmailOutbox
    from billing.settings import get_settings
    from workers.emails import build_message

    rows = session.scalars(select(EmailOutbox).where(EmailOutbox.status == "pending")).all()
    return [build_message(session, row, get_settings()) for row in rows]


if __name__ == "__main__":
    main()
