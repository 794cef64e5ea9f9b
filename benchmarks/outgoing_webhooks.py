"""Outgoing webhook figure: signed deliveries per second from a real Celery worker to a local
receiver, in a throwaway PostgreSQL database.

Queues N events spread over R readers (order is kept per reader, so R bounds parallelism),
starts one worker and prints deliveries/s from its start to the last 2xx recorded.

    .venv/bin/python benchmarks/outgoing_webhooks.py --events 2000 --readers 200
"""

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.outgoing_receiver import Receiver, running  # noqa: E402

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    database = f"pledges_bench_outgoing_{run}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    environment = {
        "ENVIRONMENT": "development",
        "DATABASE_URL": ADMIN_URL.rsplit("/", 1)[0] + "/" + database,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_QUEUE": f"pledges-bench-{run}",
        "OUTGOING_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    os.environ.update(environment)
    try:
        with running(Receiver()) as receiver:
            print(f"{measure(receiver, options, environment):.0f} deliveries/s", flush=True)
    finally:
        from billing.db import reset_caches

        reset_caches()
        redis.Redis.from_url(REDIS_URL).delete(environment["CELERY_QUEUE"])
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def measure(receiver: Receiver, options: argparse.Namespace, environment: dict[str, str]) -> float:
    from sqlalchemy import func, select

    from billing.db import session_scope
    from billing.endpoints import events as outgoing
    from billing.endpoints.service import add_endpoint
    from billing.migrate import upgrade
    from billing.models import Reader, WebhookDelivery
    from billing.settings import get_settings

    upgrade(environment["DATABASE_URL"])
    with session_scope() as session:
        add_endpoint(session, get_settings(), url=receiver.url, event_types="*")
        readers = [
            Reader(id=uuid.uuid4(), email=f"r{n}@bench.example") for n in range(options.readers)
        ]
        session.add_all(readers)
        session.flush()
        for number in range(options.events):
            reader = readers[number % len(readers)]
            outgoing.reader_updated(session, reader=reader, changed=["email"])
    command = [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=threads",
        f"--concurrency={options.concurrency}", "--loglevel=ERROR", "--without-heartbeat",
        "--without-gossip", "--without-mingle", "-Q", environment["CELERY_QUEUE"],
    ]  # fmt: skip
    started = time.monotonic()
    worker = subprocess.Popen(command, env={**os.environ, **environment})
    try:
        while True:
            with session_scope() as session:
                done = session.scalar(
                    select(func.count()).where(WebhookDelivery.status == "succeeded")
                )
            if done == options.events:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert receiver.count() >= options.events
    return options.events / elapsed


if __name__ == "__main__":
    main()
