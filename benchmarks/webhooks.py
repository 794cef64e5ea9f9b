"""Webhook figures: ingest throughput against /healthz, and end-to-end processing rate.

Runs a real `pledges serve` (one process) on PostgreSQL + Redis in a throwaway database, posts
signed events over HTTP, and prints:
  1. signed events/s stored in the inbox, as a ratio to /healthz requests/s on the same server;
  2. events/s from the first post to the last ledger row, for N distinct invoice.paid events
     applied by a real Celery worker.

    .venv/bin/python benchmarks/webhooks.py --events 10000
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from billing.dev import wait_for_port  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.stripe_events import event, invoice  # noqa: E402
from webhooks.signature import sign  # noqa: E402

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "whsec_bench_" + uuid.uuid4().hex


def signed_events(subscriptions: list[str], count: int) -> list[bytes]:
    bodies = []
    for number in range(count):
        sub_id = subscriptions[number % len(subscriptions)]
        paid = invoice(f"in_bench_{uuid.uuid4().hex}", sub_id, "cus_bench", amount=500)
        bodies.append(orjson.dumps(event("invoice.paid", paid)))
    return bodies


async def hammer(url: str, requests: list[tuple[str, bytes | None]], concurrency: int) -> float:
    """Requests per second, `concurrency` keep-alive connections at once."""
    queue: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    failures = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            path, body = queue.get_nowait()
            if body is None:
                response = await client.get(path)
            else:
                headers = {"Stripe-Signature": sign(body, SECRET, int(time.time())),
                           "Content-Type": "application/json"}  # fmt: skip
                response = await client.post(path, content=body, headers=headers)
            failures += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} requests failed")
    return len(requests) / elapsed


def seed_pledges(database_url: str, count: int) -> list[str]:
    subscriptions = [f"sub_bench_{number}" for number in range(count)]
    with psycopg.connect(database_url) as connection:
        for sub_id in subscriptions:
            reader_id, pledge_id = uuid.uuid4(), uuid.uuid4()
            connection.execute(
                "INSERT INTO readers (id, email, locale, created_at, updated_at) "
                "VALUES (%s, %s, 'en', now(), now())",
                (reader_id, f"{sub_id}@example.org"),
            )
            connection.execute(
                "INSERT INTO pledges (id, reader_id, amount_minor, fee_cover_minor, currency, "
                "interval, status, cover_fees, locale, stripe_subscription_id, created_at, "
                "updated_at) VALUES (%s, %s, 500, 0, 'eur', 'month', 'active', false, 'en', %s, "
                "now(), now())",
                (pledge_id, reader_id, sub_id),
            )
    return subscriptions


def count_rows(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000, help="end-to-end events")
    parser.add_argument("--ingest", type=int, default=3_000, help="requests per ingest run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--pledges", type=int, default=200)
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    database = f"pledges_bench_{run_id}"
    database_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    queue = f"pledges-bench-{run_id}"
    env = {
        **os.environ, "ENVIRONMENT": "test", "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL, "CELERY_QUEUE": queue, "REDIS_URL": REDIS_URL,
        "STRIPE_API_KEY": "sk_test_bench", "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
        "STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_BASE": "http://127.0.0.1:9",
    }  # fmt: skip
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "billing.cli", "db", "upgrade"], env=env, check=True,
            stdout=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        subscriptions = seed_pledges(database_url, args.pledges)
        port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "billing.app:create_app", "--factory",
                 "--port", str(port), "--log-level", "warning", "--no-access-log"],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"

        # 1. Ingest: the same server, the same client, /healthz first, then signed events.
        warmup = [("/healthz", None)] * 200
        asyncio.run(hammer(url, warmup, args.concurrency))
        healthz = asyncio.run(hammer(url, [("/healthz", None)] * args.ingest, args.concurrency))
        bodies = signed_events(subscriptions, args.ingest)
        ingest = asyncio.run(
            hammer(url, [("/webhooks/stripe", body) for body in bodies], args.concurrency)
        )
        stored = count_rows(database_url, "stripe_events")
        print(f"healthz:        {healthz:8.0f} requests/s")
        print(f"webhook ingest: {ingest:8.0f} signed events/s stored ({stored} rows)")
        print(f"ingest / healthz ratio: {ingest / healthz:.2f}")

        # 2. End to end: a clean inbox and queue, a worker, N new events, until N payments.
        redis.Redis.from_url(REDIS_URL).delete(queue)
        with psycopg.connect(database_url) as connection:
            connection.execute(
                "TRUNCATE stripe_events, email_outbox, payments RESTART IDENTITY CASCADE"
            )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                 "--pool=threads", f"--concurrency={args.worker_concurrency}",
                 "--loglevel=ERROR", "--without-heartbeat", "--without-gossip",
                 "--without-mingle", "-Q", queue],
                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        time.sleep(3)  # the worker connects before the clock starts
        bodies = signed_events(subscriptions, args.events)
        started = time.perf_counter()
        posted = asyncio.run(
            hammer(url, [("/webhooks/stripe", body) for body in bodies], args.concurrency)
        )
        while count_rows(database_url, "payments") < args.events:
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        print(f"end to end: {args.events} distinct events posted at {posted:.0f}/s, all in the "
              f"ledger after {elapsed:.1f} s: {args.events / elapsed:.0f} events/s "
              f"(worker: {args.worker_concurrency} threads)")  # fmt: skip
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        redis.Redis.from_url(REDIS_URL).delete(queue)
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
