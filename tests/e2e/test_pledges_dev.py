"""A newcomer's first run: `pledges dev` in an empty folder, then a pledge through the API."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BrowserStripe, free_port


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


@pytest.fixture
def pledges_dev(tmp_path: Path) -> object:
    ports = {"api": free_port(), "stripe": free_port(), "smtp": free_port()}
    # Only what a fresh machine has: no DATABASE_URL, no Stripe keys, no SMTP settings.
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    process = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "dev", "--port", str(ports["api"]),
         "--stripe-port", str(ports["stripe"]), "--smtp-port", str(ports["smtp"])],
        cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield process, ports, tmp_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_pledges_dev_runs_the_whole_service_and_takes_a_pledge(pledges_dev: object) -> None:
    process, ports, folder = pledges_dev  # type: ignore[misc]
    lines = _wait_for_line(process, "Press Ctrl-C to stop.", timeout=90)
    key_line = next(line for line in lines if "Finance key" in line)
    assert key_line.split()[-1].startswith("rp_")

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
    assert (folder / ".pledges" / "pledges.db").exists()

    # Stopped the way a supervisor stops it: SIGTERM to `pledges dev` alone, not to its group.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    _assert_group_gone(process.pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api}/healthz", timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stripe_base}/v1/customers", timeout=2)
