"""Browser fixtures: a real `pledges serve` process, article pages on other origins, Chromium."""

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from billing.dev import wait_for_port
from tests.conftest import free_port

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run",
]  # fmt: skip


class ArticleSite:
    """A newsroom's site on its own origin, serving one article with the widget tag."""

    def __init__(self, widget_url: str) -> None:
        self.widget_url = widget_url
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.script_attributes = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                    "<title>Article</title></head><body><article><h1>News</h1>"
                    "<p>Story.</p></article>"
                    f"<script src='{site.widget_url}' {site.script_attributes}></script>"
                    "</body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, **attributes: str) -> str:
        self.script_attributes = " ".join(f"data-{k}='{v}'" for k, v in attributes.items())
        return f"{self.origin}/article"


@pytest.fixture(scope="session")
def allowed_site() -> Iterator[ArticleSite]:
    site = ArticleSite("")
    yield site
    site.server.shutdown()


@pytest.fixture(scope="session")
def foreign_site() -> Iterator[ArticleSite]:
    site = ArticleSite("")
    yield site
    site.server.shutdown()


@pytest.fixture(scope="session")
def live_server(
    test_environment: dict[str, str], allowed_site: ArticleSite, foreign_site: ArticleSite
) -> Iterator[str]:
    """`pledges serve` in its own process, on this run's database and localstripe."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **test_environment,
        "PUBLIC_URL": url,
        "WIDGET_ORIGINS": f"{url},{allowed_site.origin}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        allowed_site.widget_url = foreign_site.widget_url = f"{url}/widget/widget.js"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


# Per module: Playwright's sync API allows one running instance per thread, and other browser
# tests start their own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: str, db: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
