"""`pledges dev`: the whole service on one machine with embedded defaults, stopped by Ctrl-C."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
from sqlalchemy.engine import make_url

from billing import local_postgres
from billing.db import sqlalchemy_url
from billing.settings import DEV_POSTGRES_PORT, DEV_WEBHOOK_SECRET

STATE_DIR = Path(".pledges")
POSTGRES_DIR = STATE_DIR / "postgres"


@dataclass(frozen=True)
class DevPorts:
    api: int = 8000
    stripe: int = 8420
    smtp: int = 8025
    postgres: int = DEV_POSTGRES_PORT


def dev_environment(environ: dict[str, str], ports: DevPorts) -> dict[str, str]:
    """The embedded defaults, under whatever the operator already set."""
    env = dict(environ)
    env.setdefault("ENVIRONMENT", "development")
    env.setdefault("PUBLIC_URL", f"http://127.0.0.1:{ports.api}")
    env.setdefault("WIDGET_ORIGINS", env["PUBLIC_URL"])
    if "STRIPE_API_KEY" not in environ:
        env["STRIPE_API_BASE"] = env.get("STRIPE_API_BASE", f"http://127.0.0.1:{ports.stripe}")
    if "SMTP_HOST" not in environ:
        env["SMTP_HOST"] = "127.0.0.1"
        env["SMTP_PORT"] = str(ports.smtp)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def prepare_broker(broker_url: str, queue: str) -> None:
    """Create the broker's tables and queue once, before the API and worker race to do it."""
    from kombu.connection import Connection

    with Connection(broker_url) as connection:  # type: ignore[no-untyped-call]
        connection.default_channel.queue_declare(queue=queue)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def register_localstripe_webhook(api_base: str, url: str, secret: str) -> None:
    response = httpx.post(
        f"{api_base}/_config/webhooks/pledges", data={"url": url, "secret": secret}, timeout=5
    )
    response.raise_for_status()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_dev(ports: DevPorts, environ: dict[str, str], demo: bool = False) -> int:
    STATE_DIR.mkdir(exist_ok=True)
    env = dev_environment(environ, ports)
    python = sys.executable
    embedded_database = "DATABASE_URL" not in environ
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> None:
        # Each child leads its own process group, so stopping it also stops what it forked
        # (Celery's embedded beat, uvicorn's workers).
        processes.append(subprocess.Popen([python, *args], env=env, start_new_session=True))

    def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    def stop() -> None:
        for process in processes:
            signal_group(process, signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            signal_group(process, signal.SIGKILL)

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # No Redis needed: the broker is kombu's SQLAlchemy transport on the same PostgreSQL.
        if embedded_database:
            server = local_postgres.start(POSTGRES_DIR, ports.postgres)
            env["DATABASE_URL"] = server.create_database("pledges")
            broker_database = server.create_database("pledges_broker")
            env.setdefault("CELERY_BROKER_URL", "sqla+" + sqlalchemy_url(broker_database))
        env.setdefault("CELERY_BROKER_URL", "sqla+" + sqlalchemy_url(env["DATABASE_URL"]))
        if "CELERY_BROKER_URL" not in environ:
            prepare_broker(env["CELERY_BROKER_URL"], env.get("CELERY_QUEUE", "pledges"))
        if "STRIPE_API_KEY" not in environ:
            start("-m", "billing.localstripe_server", "--port", str(ports.stripe))
        if "SMTP_HOST" not in environ:
            start("-m", "billing.mail_catcher", "--port", str(ports.smtp),
                  "--folder", str(STATE_DIR / "mail"))  # fmt: skip
        subprocess.run([python, "-m", "billing.cli", "db", "upgrade"], env=env, check=True)
        key = subprocess.run(
            [python, "-m", "billing.cli", "apikey", "create", "--role", "finance",
             "--name", "pledges dev"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        start("-m", "billing.cli", "serve", "--port", str(ports.api))
        start("-m", "billing.cli", "worker", "--concurrency", "2")
        wait_for_port(ports.api)
        if "STRIPE_API_KEY" not in environ:
            wait_for_port(ports.stripe)
            secret = env.get("STRIPE_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET).split(",")[0]
            register_localstripe_webhook(
                env["STRIPE_API_BASE"], f"{env['PUBLIC_URL']}/webhooks/stripe", secret
            )
        if demo:
            print("Filling the ledger with a demo year of pledges…", flush=True)
            subprocess.run([python, "-m", "webhooks.demo", "--api", env["PUBLIC_URL"]],
                           env=env, check=True)  # fmt: skip
        print(
            f"\nReader Pledges is running:\n"
            f"  API          {env['PUBLIC_URL']}  (OpenAPI docs at /docs)\n"
            f"  Demo article {env['PUBLIC_URL']}/demo  (the support widget on an article)\n"
            f"  Dashboard    {env['PUBLIC_URL']}/reports/dashboard  (with the finance key)\n"
            f"  Database     {make_url(env['DATABASE_URL']).render_as_string()}\n"
            f"  Stripe       {env.get('STRIPE_API_BASE', 'api.stripe.com')}\n"
            f"  Mail         {env['SMTP_HOST']}:{env.get('SMTP_PORT', '25')}"
            f"  (caught mails in {STATE_DIR / 'mail'})\n"
            f"  Finance key  {key}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        failed = next(p for p in processes if p.poll() is not None)
        print(f"a process exited ({failed.args!r}); stopping", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stop()
        if embedded_database:
            local_postgres.stop(POSTGRES_DIR)


if __name__ == "__main__":
    raise SystemExit(run_dev(DevPorts(), {}))
