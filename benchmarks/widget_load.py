"""Widget weight and time to interactive in headless Chromium, beside the card field alone.

Starts localstripe and `pledges serve` on free 127.0.0.1 ports, then loads, cold, N times each:
  A. the demo article with the support widget (widget.js + widget.css + config + Stripe.js +
     the mounted card field), ready when the widget marks itself data-ready;
  B. a bare page that loads Stripe.js and mounts its card field, nothing else.
Stripe.js here is localstripe's stand-in (real Stripe is unreachable), so B is a floor for
"Stripe's own card field", not the real thing. Prints bytes transferred (gzip) and medians.

    .venv/bin/python benchmarks/widget_load.py [--runs 15]
"""

import argparse
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, sync_playwright

from billing import local_postgres
from billing.dev import wait_for_port

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--no-first-run"]  # fmt: skip
# Records when the element flips to ready, so polling latency does not count.
READY_PROBE = """
new MutationObserver((_, observer) => {
  const ready = document.querySelector('[data-ready=true]');
  if (ready && window.__readyAt === undefined) { window.__readyAt = performance.now(); }
}).observe(document, {subtree: true, attributes: true, childList: true});
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def card_only_site(stripe_js_url: str) -> tuple[ThreadingHTTPServer, str]:
    page = (
        "<!doctype html><html><head><meta charset='utf-8'></head><body>"
        "<div id='card'></div>"
        f"<script src='{stripe_js_url}'></script>"
        "<script>Stripe('pk_test_bench').elements().create('card').mount('#card');"
        "document.getElementById('card').dataset.ready = 'true';</script></body></html>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def measure(browser: Browser, url: str, runs: int) -> tuple[list[float], dict[str, int]]:
    times: list[float] = []
    transferred: dict[str, int] = {}
    for _ in range(runs):
        context = browser.new_context()
        page = context.new_page()
        page.add_init_script(READY_PROBE)
        page.goto(url)
        page.wait_for_function("window.__readyAt !== undefined", timeout=30_000)
        times.append(float(page.evaluate("window.__readyAt")))
        transferred = {
            entry["name"].split("/")[-1] or entry["name"].split("/")[-2]: int(entry["size"])
            for entry in page.evaluate(
                "performance.getEntriesByType('resource').map("
                "e => ({name: e.name, size: e.transferSize}))"
            )
        }
        context.close()
    return times, transferred


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    stripe_port, api_port = free_port(), free_port()
    stripe_base, api = f"http://127.0.0.1:{stripe_port}", f"http://127.0.0.1:{api_port}"
    workdir = tempfile.mkdtemp(prefix="widget-bench-")
    database = local_postgres.start(Path(workdir) / "postgres")
    env = {**os.environ, "ENVIRONMENT": "development", "STRIPE_API_BASE": stripe_base,
           "PUBLIC_URL": api, "WIDGET_ORIGINS": api, "PYTHONPATH": str(ROOT),
           "DATABASE_URL": database.create_database("bench")}  # fmt: skip
    processes = [
        subprocess.Popen([sys.executable, "-m", "billing.localstripe_server", "--port",
                          str(stripe_port)], env=env, cwd=workdir,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "billing.cli", "serve", "--port", str(api_port)],
                         env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    server = None
    try:
        wait_for_port(stripe_port)
        wait_for_port(api_port)
        stripe_js = f"{stripe_base}/js.stripe.com/v3/"
        server, card_only_url = card_only_site(stripe_js)
        gzip_sizes = {}
        for name, url in [("widget.js", f"{api}/widget/widget.js"),
                          ("widget.css", f"{api}/widget/widget.css"),
                          ("config", f"{api}/v1/widget/config"),
                          ("stripe.js stand-in", stripe_js)]:  # fmt: skip
            raw = httpx.get(url).content
            gzip_sizes[name] = (len(raw), len(gzip.compress(raw, compresslevel=9)))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            measure(browser, f"{api}/demo", 2)  # warm the servers, not the browser cache
            # Alternate the two so a busy moment on the shared machine hits both alike.
            widget_times, card_times = [], []
            for _ in range(runs):
                times, widget_bytes = measure(browser, f"{api}/demo", 1)
                widget_times += times
                times, card_bytes = measure(browser, card_only_url, 1)
                card_times += times
            browser.close()
    finally:
        if server is not None:
            server.shutdown()
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        local_postgres.stop(database.datadir)

    print(f"runs: {runs} cold loads each, alternated, headless Chromium, 127.0.0.1")
    print("size (bytes): raw -> gzip -9")
    for name, (raw, packed) in gzip_sizes.items():
        print(f"  {name:<20} {raw:>7} -> {packed:>6}")
    ours = sum(packed for name, (_, packed) in gzip_sizes.items() if name != "stripe.js stand-in")
    print(f"  widget's own total gzip: {ours} bytes (widget.js + widget.css + config)")
    print("transferred in the browser (transferSize, resources after the page itself):")
    print(f"  widget page: {widget_bytes}")
    print(f"  card only:   {card_bytes}")
    widget_median, card_median = statistics.median(widget_times), statistics.median(card_times)
    print(f"time to interactive, median ms: widget {widget_median:.1f}  card field alone "
          f"{card_median:.1f}  ratio {widget_median / card_median:.2f}")  # fmt: skip
    print(f"  widget p90 {statistics.quantiles(widget_times, n=10)[-1]:.1f} ms, card field p90 "
          f"{statistics.quantiles(card_times, n=10)[-1]:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
