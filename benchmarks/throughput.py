"""Issue 11's figures, each beside the baseline measured in the same run on the same machine.

1. Ingest: `wrk -t2 -c16 -d10s` against `pledges serve` run as the README runs it (one process,
   its default logging, no worker): GET /healthz first, then distinct signed ~4 KB current-shape
   `invoice.paid` events (a Lua script cycling through bodies pre-signed just before the run).
2. Drain: 3,000 stored renewals for 10 pledges, then `pledges worker` (its defaults) starts, with
   receipts going to a live aiosmtpd server; clocked from the worker's "ready" (its start-up
   wakes a drain) until the last payment row. With 1, then 2 worker processes (the second
   `--no-beat`, as the README runs extra workers).

Both are also run on the code from before this work (`--baseline-ref`, by default main before
the throughput branch was merged), from `git archive` and the same virtualenv; its drain is fed
one Celery task per event, as its webhook endpoint did.

Needs the local PostgreSQL and Redis (as the tests do) and wrk (`apt-get install -y wrk`).

    PYTHONPATH=. .venv/bin/python benchmarks/throughput.py [--drain-events 3000]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import redis
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from billing.dev import wait_for_port  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.stripe_events import event, invoice  # noqa: E402
from webhooks.signature import sign  # noqa: E402

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WRK = ["wrk", "-t2", "-c16", "-d10s"]
# main before the throughput work was merged (the first parent of "Merge throughput", 115afc5).
BASELINE_REF = "115afc5^1"
BODIES = 30_000
# wrk reads one "signature<TAB>body" line per request; each thread takes every other line.
LUA = """
local lines = {}
local index = 0
function setup(thread)
  thread:set("offset", #threads_seen)
  table.insert(threads_seen, thread)
end
threads_seen = {}
function init(args)
  local n = 0
  for line in io.lines(args[1]) do
    if n % 2 == offset then table.insert(lines, line) end
    n = n + 1
  end
end
function request()
  index = index + 1
  local line = lines[(index - 1) % #lines + 1]
  local tab = line:find("\\t", 1, true)
  return wrk.format("POST", "/webhooks/stripe",
    {["Content-Type"] = "application/json", ["Stripe-Signature"] = line:sub(1, tab - 1)},
    line:sub(tab + 1))
end
"""


class CountingMail:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def seed_pledges(connection: psycopg.Connection[Any], count: int) -> list[str]:
    subscriptions = [f"sub_bench_{number}" for number in range(count)]
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
            "updated_at, activated_at) VALUES (%s, %s, 500, 0, 'eur', 'month', 'active', false, "
            "'en', %s, now(), now(), now())",
            (pledge_id, reader_id, sub_id),
        )
    connection.commit()
    return subscriptions


def renewal(subscriptions: list[str], number: int) -> bytes:
    sub_id = subscriptions[number % len(subscriptions)]
    paid = invoice(f"in_bench_{uuid.uuid4().hex}", sub_id, f"cus_{sub_id}", amount=500)
    return orjson.dumps(event("invoice.paid", paid))


def count(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(query).fetchone()
    return int(row[0]) if row else 0


def wrk(url: str, *script: str, duration: str = "10s") -> tuple[float, int]:
    """(requests/s, requests) from one wrk run; any non-2xx answer fails the benchmark."""
    options = ["-s", script[0]] if script else []
    command = [*WRK[:-1], f"-d{duration}", *options, url, *(["--", *script[1:]] if script else [])]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    total = re.search(r"(\d+) requests in", result.stdout)
    if rate is None or total is None or "Non-2xx" in result.stdout:
        raise SystemExit(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    return float(rate.group(1)), int(total.group(1))


def ingest(
    env: dict[str, str], database_url: str, subscriptions: list[str], tree: Path, label: str
) -> float:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--port", str(port)],
        env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="pledges-bench-"))
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        script, bodies = folder / "events.lua", folder / "events.tsv"
        script.write_text(LUA)
        wrk(f"{url}/healthz", duration="3s")  # warm-up
        healthz, _ = wrk(f"{url}/healthz")
        # Distinct bodies for 3,000 events/s over 10 s; signed now, well inside the 300 s.
        at = int(time.time())
        with bodies.open("wb") as out:
            for number in range(BODIES):
                body = renewal(subscriptions, number)
                out.write(sign(body, env["STRIPE_WEBHOOK_SECRET"], at).encode() + b"\t")
                out.write(body + b"\n")
        events, requests = wrk(f"{url}/webhooks/stripe", str(script), str(bodies))
        if requests > BODIES:
            print(f"  warning: {requests} requests cycled through {BODIES} bodies (duplicates)")
        stored = count(database_url, "SELECT count(*) FROM stripe_events")
        print(f"ingest ({label}): /healthz {healthz:.0f} requests/s, signed invoice.paid "
              f"{events:.0f} events/s ({stored} distinct events stored): "
              f"ratio {events / healthz:.2f}", flush=True)  # fmt: skip
        return events / healthz
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def store_renewals(database_url: str, subscriptions: list[str], total: int) -> None:
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "TRUNCATE stripe_events, email_outbox, payments RESTART IDENTITY CASCADE"
        )
        with connection.cursor() as cursor:
            rows = []
            for number in range(total):
                document = orjson.loads(renewal(subscriptions, number))
                rows.append((document["id"], orjson.dumps(document).decode()))
            cursor.executemany(
                "INSERT INTO stripe_events (stripe_event_id, type, livemode, api_version, "
                "stripe_created_at, payload, status, attempts, received_at) "
                "VALUES (%s, 'invoice.paid', false, NULL, now(), %s, 'pending', 0, now())",
                rows,
            )


def drain(
    env: dict[str, str],
    database_url: str,
    subscriptions: list[str],
    total: int,
    workers: int,
    tree: Path,
    label: str,
) -> float:
    mail = CountingMail()
    smtp_port = free_port()
    smtp = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    redis.Redis.from_url(REDIS_URL).delete(env["CELERY_QUEUE"])
    store_renewals(database_url, subscriptions, total)
    if tree != ROOT:
        queue_one_task_per_event(env, database_url)
    worker_env = {**env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port)}
    processes: list[subprocess.Popen[bytes]] = []
    ready: list[float] = []
    try:
        started = time.perf_counter()
        for number in range(workers):
            command = [sys.executable, "-m", "billing.cli", "worker"]
            processes.append(
                subprocess.Popen(
                    command + ([] if number == 0 else ["--no-beat"]), env=worker_env, cwd=tree,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )
            )  # fmt: skip
            threading.Thread(target=note_ready, args=(processes[-1], ready), daemon=True).start()
        first = None
        while (paid := count(database_url, "SELECT count(*) FROM payments")) < total:
            if paid and first is None:
                first = time.perf_counter()
            time.sleep(0.05)
        done = time.perf_counter()
        first = first or done
        receipts_at_done = mail.received
        while mail.received < total and time.perf_counter() - done < 300:
            time.sleep(0.05)
        mailed = time.perf_counter()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        smtp.stop()
    # From the first worker's "ready" (it wakes a drain at once) to the last payment row:
    # without the interpreter's start, with every batch (the first commit is one batch in).
    since = min(ready) if ready else started
    rate = total / max(done - since, 0.05)
    print(f"drain ({label}), {workers} worker process(es): {total} renewals in the ledger "
          f"{done - since:.1f} s after the first worker was ready: {rate:.0f} events/s "
          f"(first to last payment row {done - first:.1f} s; from process start "
          f"{done - started:.1f} s: {total / (done - started):.0f} events/s; receipts sent by "
          f"then {receipts_at_done}, all {mail.received} after {mailed - started:.1f} s)",
          flush=True)  # fmt: skip
    return rate


def note_ready(process: subprocess.Popen[bytes], ready: list[float]) -> None:
    """Celery prints "<name> ready." once the worker consumes; the rest of stderr is drained."""
    assert process.stderr is not None
    for line in process.stderr:
        if b" ready." in line:
            ready.append(time.perf_counter())


def queue_one_task_per_event(env: dict[str, str], database_url: str) -> None:
    """What main's webhook endpoint did for each stored event: one Celery task per event."""
    from celery import Celery

    producer = Celery("bench", broker=env["CELERY_BROKER_URL"])
    with psycopg.connect(database_url) as connection:
        ids = [row[0] for row in connection.execute("SELECT id FROM stripe_events ORDER BY id")]
    for event_id in ids:
        producer.send_task("webhooks.process_event", args=[event_id], queue=env["CELERY_QUEUE"])


def export_main(ref: str) -> Path:
    """The code before this work (read-only `git archive` of `ref`), beside this checkout: the
    same dependencies, so the same virtualenv runs it."""
    folder = Path(tempfile.mkdtemp(prefix="pledges-main-"))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"baseline: {ref} ({commit}), from `git archive`")
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drain-events", type=int, default=3000)
    parser.add_argument("--pledges", type=int, default=10)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument(
        "--baseline", action=argparse.BooleanOptionalAction, default=True,
        help="also measure the code before this work (--baseline-ref) in the same run",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-ref", default=BASELINE_REF,
        help="the commit to compare with (default: main before the issue's first merge)",
    )  # fmt: skip
    parser.add_argument("--baseline-events", type=int, default=3000)
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_ingest:
        raise SystemExit("wrk is missing: `sudo apt-get install -y wrk` (Debian/Ubuntu)")

    run_id = uuid.uuid4().hex[:8]
    database = f"pledges_bench_{run_id}"
    database_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    env = {
        **os.environ, "ENVIRONMENT": "test", "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL, "CELERY_QUEUE": f"pledges-bench-{run_id}",
        "REDIS_URL": REDIS_URL, "STRIPE_API_KEY": "sk_test_bench",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
        "STRIPE_WEBHOOK_SECRET": "whsec_bench_" + uuid.uuid4().hex,
        "READER_LINK_SECRET": "bench-reader-links-" + uuid.uuid4().hex,
        "STRIPE_API_BASE": "http://127.0.0.1:9",  # nothing there: renewals need no Stripe call
    }  # fmt: skip
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        subprocess.run(
            [sys.executable, "-m", "billing.cli", "db", "upgrade"], env=env, check=True,
            stdout=subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        with psycopg.connect(database_url) as connection:
            subscriptions = seed_pledges(connection, args.pledges)
        main_tree = export_main(args.baseline_ref) if args.baseline else None
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        print(
            f"ingest: {' '.join(WRK)}, /healthz then POST /webhooks/stripe, against "
            "`pledges serve --port P` (1 process, its default logging), no worker running"
        )
        ratios = {}
        if not args.skip_ingest:
            if main_tree is not None:
                ratios["before"] = ingest(env, database_url, subscriptions, main_tree, "before")
                with psycopg.connect(database_url) as connection:
                    connection.execute("TRUNCATE stripe_events RESTART IDENTITY CASCADE")
            ratios["now"] = ingest(env, database_url, subscriptions, ROOT, "now")
        print(
            f"drain: {args.drain_events} stored renewals of {args.pledges} pledges, then "
            "`pledges worker` (defaults: 2 threads, beat; a second one `--no-beat`) with "
            "receipts to a live aiosmtpd; clocked from the first worker's 'ready' to the last "
            "payment row"
        )
        rates = {}
        if main_tree is not None:
            rates["before, 1 worker"] = drain(
                env, database_url, subscriptions, args.baseline_events, 1, main_tree, "before"
            )
        for workers in (1, 2):
            rates[f"now, {workers} worker(s)"] = drain(
                env, database_url, subscriptions, args.drain_events, workers, ROOT, "now"
            )
        print("summary (goal: ingest/healthz >= 0.5, drain >= 500 events/s):")
        for label, ratio in ratios.items():
            print(f"  ingest / healthz, {label}: {ratio:.2f}")
        for label, rate in rates.items():
            print(f"  drain, {label}: {rate:.0f} events/s")
        if main_tree is not None:
            shutil.rmtree(main_tree, ignore_errors=True)
    finally:
        redis.Redis.from_url(REDIS_URL).delete(env["CELERY_QUEUE"])
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
