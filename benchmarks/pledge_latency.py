"""Latency of create + confirm through a real `pledges serve` beside the bare Stripe calls it makes.

Starts localstripe and the API on free ports against a throwaway PostgreSQL database, then
alternates rounds of (a) POST /v1/pledges + POST /confirm and (b) the same Stripe calls made
directly with the stripe library, so both see the same machine load and localstripe store size.
The browser's card confirmation (Stripe.js) runs between create and confirm and is not timed.

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
import stripe

from billing.dev import wait_for_port
from billing.migrate import upgrade
from billing.stripe_gateway import API_VERSION
from tests.conftest import BrowserStripe, free_port

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "CELERY_QUEUE": f"bench-{database}",
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
    client = stripe.StripeClient(
        "sk_test_bench", stripe_version=API_VERSION, base_addresses={"api": stripe_base}
    )
    http = httpx.Client(base_url=api, timeout=30)
    ours: list[float] = []
    bare: list[float] = []
    lean: list[float] = []

    def through_api(index: int) -> float:
        body = {"email": f"bench{index}@example.org", "amount": 500, "currency": "eur"}
        created: dict[str, str] = {}
        elapsed = timed(lambda: created.update(http.post("/v1/pledges", json=body).json()))
        card = {"payment_method": browser.create_payment_method("4242424242424242")}
        confirmed: dict[str, str] = {}
        elapsed += timed(
            lambda: confirmed.update(
                http.post(f"/v1/pledges/{created['id']}/confirm", json=card).json()
            )
        )
        assert confirmed.get("status") == "active", confirmed
        return elapsed

    def bare_calls(index: int, lean: bool = False) -> float:
        """The Stripe calls one pledge needs, made directly: the floor our API adds to.

        As main's gateway made them; `lean`: as this gateway makes them (no second read of the
        card before attaching it, the Plan read once per process)."""
        customer = None

        def create() -> None:
            nonlocal customer
            customer = client.v1.customers.create(params={"email": f"bare{index}@example.org"})

        elapsed = timed(create)
        assert customer is not None
        method = browser.create_payment_method("4242424242424242")

        def confirm() -> None:
            assert customer is not None
            client.v1.payment_methods.retrieve(method)
            intent = client.v1.setup_intents.create(
                params={"customer": customer.id, "payment_method_types": ["card"]}
            )
            client.v1.setup_intents.confirm(intent.id, params={"payment_method": method})
            if not lean:
                client.v1.payment_methods.retrieve(method)
            client.v1.payment_methods.attach(method, params={"customer": customer.id})
            if not lean:
                client.v1.plans.retrieve("pledge-eur-500-month")
            client.v1.subscriptions.create(
                params={"customer": customer.id, "items": [{"plan": "pledge-eur-500-month"}],
                        "default_payment_method": method, "expand": ["latest_invoice"]}
            )  # fmt: skip

        return elapsed + timed(confirm)

    through_api(-1)  # warm-up: creates the shared Plan, opens connections
    for index in range(rounds):
        ours.append(through_api(index))
        bare.append(bare_calls(index))
        lean.append(bare_calls(rounds + index, lean=True))

    series = (
        ("create+confirm via API", ours),
        ("bare calls (main's 8)", bare),
        ("bare calls (this 6)", lean),
    )
    for name, samples in series:
        print(
            f"{name:24s} n={len(samples)} p50={percentile(samples, 0.5):7.1f} ms "
            f"p95={percentile(samples, 0.95):7.1f} ms mean={statistics.mean(samples):7.1f} ms"
        )
    print(
        f"ratio (ours / bare, main's calls): p50 "
        f"{percentile(ours, 0.5) / percentile(bare, 0.5):.2f}x,"
        f" p95 {percentile(ours, 0.95) / percentile(bare, 0.95):.2f}x   (goal <= 1.2x, was 1.9x)"
    )
    print(
        f"ratio (ours / bare, the same calls): p50 "
        f"{percentile(ours, 0.5) / percentile(lean, 0.5):.2f}x, "
        f"p95 {percentile(ours, 0.95) / percentile(lean, 0.95):.2f}x"
    )


if __name__ == "__main__":
    main()
