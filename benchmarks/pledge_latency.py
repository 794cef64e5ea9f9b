"""Latency of create + confirm through a real `pledges serve` beside the bare Stripe calls it makes.

Starts localstripe and `pledges serve` (as the README runs it, rate limits in Redis as in
docker-compose.yml) on free ports against a throwaway PostgreSQL database, then alternates
rounds of (a) POST /v1/pledges + POST /confirm and (b) the same Stripe calls made directly with
the stripe library, so both see the same machine load and localstripe store size. The browser's
card step (Stripe.js creating the PaymentMethod) runs between create and confirm, untimed.

    PYTHONPATH=. python benchmarks/pledge_latency.py [--rounds 200]   (or: make bench)
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import httpx
import psycopg

from billing.dev import wait_for_port
from billing.migrate import upgrade
from billing.stripe_gateway import stripe_client
from tests.conftest import BrowserStripe, free_port

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    database = f"pledges_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    stripe_port, api_port = free_port(), free_port()
    stripe_base = f"http://127.0.0.1:{stripe_port}"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": ADMIN_URL.rsplit("/", 1)[0] + "/" + database,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_QUEUE": f"bench-{database}",
        # Rate limits in Redis, as docker-compose.yml runs the API (in memory without it).
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_KEY_PREFIX": f"bench-{database}",
        "STRIPE_API_KEY": "sk_test_bench",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
        "STRIPE_WEBHOOK_SECRET": "whsec_bench_" + uuid.uuid4().hex,
        "READER_LINK_SECRET": "bench-reader-links-" + uuid.uuid4().hex,
        # One card and one address make every pledge here; the limits are not what is measured.
        "RATE_LIMIT_PER_IP": "1000000/hour",
        "RATE_LIMIT_PER_CARD": "1000000/hour",
        "STRIPE_API_BASE": stripe_base,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "billing.localstripe_server", "--port", str(stripe_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    ]  # fmt: skip
    try:
        upgrade(env["DATABASE_URL"])
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "billing.cli", "serve", "--port", str(api_port)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_for_port(stripe_port)
        wait_for_port(api_port)
        run(f"http://127.0.0.1:{api_port}", stripe_base, args.rounds)
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run(api: str, stripe_base: str, rounds: int) -> None:
    browser = BrowserStripe(stripe_base, "pk_test_bench")
    # Configured as the gateway configures its own: the same HTTP client, version, retries.
    client = stripe_client("sk_test_bench", stripe_base)
    http = httpx.Client(base_url=api, timeout=30)
    ours: dict[str, list[float]] = {"create": [], "confirm": [], "both": []}
    bare: dict[str, list[float]] = {"create": [], "confirm": [], "both": []}

    def through_api(index: int) -> tuple[float, float]:
        body = {"email": f"bench{index}@example.org", "amount": 500, "currency": "eur"}
        # As the widget sends it: a retried click must not make a second pledge.
        key = {"Idempotency-Key": uuid.uuid4().hex}
        created: dict[str, str] = {}
        create = timed(
            lambda: created.update(http.post("/v1/pledges", json=body, headers=key).json())
        )
        card = {"payment_method": browser.create_payment_method("4242424242424242")}
        confirmed: dict[str, str] = {}
        confirm = timed(
            lambda: confirmed.update(
                http.post(f"/v1/pledges/{created['id']}/confirm", json=card).json()
            )
        )
        assert confirmed.get("status") == "active", confirmed
        return create, confirm

    def bare_calls(index: int) -> tuple[float, float]:
        """The Stripe calls one monthly pledge takes, made directly: the floor our API adds to.

        The same calls the gateway makes: the customer; then the card read (its fingerprint
        feeds the per-card limit before the card is tried), the SetupIntent created and
        confirmed with it (localstripe confirms only in a second call), the card attached
        (localstripe does not attach it through the SetupIntent) and the subscription. The
        Plan is read once per process, as the gateway caches it."""
        customer = None

        def create() -> None:
            nonlocal customer
            customer = client.v1.customers.create(params={"email": f"bare{index}@example.org"})

        created = timed(create)
        assert customer is not None
        method = browser.create_payment_method("4242424242424242")

        def confirm() -> None:
            assert customer is not None
            client.v1.payment_methods.retrieve(method)
            intent = client.v1.setup_intents.create(
                params={"customer": customer.id, "payment_method_types": ["card"]}
            )
            client.v1.setup_intents.confirm(intent.id, params={"payment_method": method})
            client.v1.payment_methods.attach(method, params={"customer": customer.id})
            client.v1.subscriptions.create(
                params={"customer": customer.id, "items": [{"plan": "pledge-eur-500-month"}],
                        "default_payment_method": method, "expand": ["latest_invoice"]}
            )  # fmt: skip

        return created, timed(confirm)

    through_api(-1)  # warm-up: creates the shared Plan, opens connections
    bare_calls(-1)
    for index in range(rounds):
        # Alternating, so both see the same machine load and localstripe store size.
        for samples, measure in ((ours, through_api), (bare, bare_calls)):
            create, confirm = measure(index)
            samples["create"].append(create)
            samples["confirm"].append(confirm)
            samples["both"].append(create + confirm)

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print("`pledges serve` (1 process, default logging, rate limits in Redis) and localstripe")
    for name, samples in (("create+confirm via API", ours), ("bare Stripe calls", bare)):
        print(
            f"{name:24s} n={len(samples['both'])} p50={percentile(samples['both'], 0.5):7.1f} ms "
            f"p95={percentile(samples['both'], 0.95):7.1f} ms "
            f"mean={statistics.mean(samples['both']):7.1f} ms "
            f"(create p50 {percentile(samples['create'], 0.5):5.1f}, "
            f"confirm p50 {percentile(samples['confirm'], 0.5):5.1f})"
        )
    print(
        f"ratio (ours / bare, the same 6 calls): p50 "
        f"{percentile(ours['both'], 0.5) / percentile(bare['both'], 0.5):.2f}x, "
        f"p95 {percentile(ours['both'], 0.95) / percentile(bare['both'], 0.95):.2f}x"
        "   (goal: p50 <= 1.2x)"
    )


if __name__ == "__main__":
    main()
