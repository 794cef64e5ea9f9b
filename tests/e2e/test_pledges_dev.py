"""A newcomer's first run: `pledges dev` in an empty folder, a pledge through the API, the
printed finance key reading it in reports, CSV and the dashboard, and the data still there
after a restart."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from billing import local_postgres
from tests.conftest import BrowserStripe, free_port
from tests.e2e.conftest import CHROMIUM_ARGS


def _wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed:\n{''.join(lines[-40:])}")


def _assert_group_gone(group: int, timeout: float = 15) -> None:
    """No process that `pledges dev` started (API, worker, localstripe, …) outlives it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    leftover = subprocess.run(
        ["ps", "-o", "pid,args", "-g", str(group)], capture_output=True, text=True
    )
    raise AssertionError(f"processes outlived pledges dev:\n{leftover.stdout}")


def _start(folder: Path, ports: dict[str, int]) -> subprocess.Popen[str]:
    # Only what a fresh machine has: no DATABASE_URL, no Stripe keys, no SMTP settings.
    environ = {"PATH": os.environ["PATH"], "HOME": str(folder), "LANG": "C.UTF-8"}
    return subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "dev", "--port", str(ports["api"]),
         "--stripe-port", str(ports["stripe"]), "--smtp-port", str(ports["smtp"]),
         "--postgres-port", str(ports["postgres"])],
        cwd=folder, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def _finance_key(process: subprocess.Popen[str]) -> str:
    lines = _wait_for_line(process, "Press Ctrl-C to stop.", timeout=120)
    assert any("/reports/dashboard" in line for line in lines), "".join(lines)
    key = next(line for line in lines if "Finance key" in line).split()[-1]
    assert key.startswith("rp_")
    return key


def _stop(process: subprocess.Popen[str], signum: int) -> None:
    process.send_signal(signum)
    assert process.wait(timeout=60) == 0
    _assert_group_gone(process.pid)


@pytest.fixture
def dev_folder(
    scratch_folder: Path,
) -> Iterator[tuple[Path, dict[str, int], list[subprocess.Popen[str]]]]:
    ports = {name: free_port() for name in ("api", "stripe", "smtp", "postgres")}
    started: list[subprocess.Popen[str]] = []
    try:
        yield scratch_folder, ports, started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        local_postgres.stop(scratch_folder / ".pledges" / "postgres")


def _summary(api: str, key: str) -> dict[str, object]:
    response = httpx.get(
        f"{api}/v1/reports/summary", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_pledges_dev_runs_everything_on_embedded_postgres_and_finance_reads_it(
    dev_folder: tuple[Path, dict[str, int], list[subprocess.Popen[str]]],
) -> None:
    folder, ports, started = dev_folder
    started.append(process := _start(folder, ports))
    key = _finance_key(process)

    api = f"http://127.0.0.1:{ports['api']}"
    assert httpx.get(f"{api}/readyz", timeout=10).json()["checks"] == {
        "database": "ok", "broker": "ok",
    }  # fmt: skip
    created = httpx.post(
        f"{api}/v1/pledges",
        json={"email": "first@example.org", "amount": 300, "currency": "eur"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    stripe_base = f"http://127.0.0.1:{ports['stripe']}"
    browser = BrowserStripe(stripe_base, created.json()["publishable_key"])
    card = {"payment_method": browser.create_payment_method("4242424242424242")}
    confirmed = httpx.post(
        f"{api}/v1/pledges/{created.json()['id']}/confirm", json=card, timeout=10
    )
    assert confirmed.json()["status"] == "active"
    subscriptions = httpx.get(
        f"{stripe_base}/v1/subscriptions", auth=("sk_test_localstripe", "")
    ).json()["data"]
    assert [(s["status"], s["items"]["data"][0]["plan"]["amount"]) for s in subscriptions] == [
        ("active", 300)
    ]

    summary = _summary(api, key)
    assert (summary["active_pledges"], summary["mrr"]) == (1, {"eur": 300})
    csv = httpx.get(
        f"{api}/v1/reports/pledges?format=csv",
        headers={"Authorization": f"Bearer {key}"}, timeout=30,
    )  # fmt: skip
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert created.json()["id"] in csv.text
    assert _dashboard_active_pledges(api, key) == "1"

    # Ctrl-C in the terminal: everything stops, the embedded PostgreSQL too.
    _stop(process, signal.SIGINT)
    assert local_postgres.running(folder / ".pledges" / "postgres") is None
    for port in ports.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)

    # A second run in the same folder finds the same ledger; a supervisor's SIGTERM stops it.
    started.append(again := _start(folder, ports))
    second_key = _finance_key(again)
    assert _summary(api, second_key)["active_pledges"] == 1
    _stop(again, signal.SIGTERM)
    assert local_postgres.running(folder / ".pledges" / "postgres") is None


def _dashboard_active_pledges(api: str, key: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            page = chromium.new_page()
            page.goto(f"{api}/reports/dashboard")
            page.fill("#api_key", key)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            # The dashboard opens on the last complete month; the pledge is this month's.
            page.goto(f"{api}/reports/dashboard?month={datetime.now(UTC):%Y-%m}")
            page.wait_for_function("window.dashboardCharts && window.dashboardCharts.length === 3")
            return page.inner_text('dd[data-figure="active_pledges"]').strip()
        finally:
            chromium.close()
