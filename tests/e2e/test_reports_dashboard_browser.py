"""The dashboard in headless Chromium: signed in with a key, figures shown, charts drawn cleanly."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from billing.dev import wait_for_port
from tests.conftest import free_port
from tests.reports_ledger import api_key, seed_ledger

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run",
]  # fmt: skip


@pytest.fixture
def api_server(test_environment: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "billing.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **test_environment},
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_dashboard_shows_the_figures_and_draws_the_charts_without_errors(
    db: Session, api_server: str
) -> None:
    seed_ledger(db)
    key = api_key(db, "finance")
    problems: list[str] = []
    outside_requests: list[str] = []

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))

        def only_this_app(route: "playwright_api.Route") -> None:
            if route.request.url.startswith(api_server):
                route.continue_()
            else:
                outside_requests.append(route.request.url)
                route.abort()

        page.route("**/*", only_this_app)
        page.goto(f"{api_server}/reports/dashboard")
        page.fill("#api_key", key)
        page.click("button[type=submit]")
        page.goto(f"{api_server}/reports/dashboard?month=2026-10")
        page.wait_for_function("window.dashboardCharts && window.dashboardCharts.length === 3")

        figures = {
            name: page.inner_text(f'dd[data-figure="{name}"]')
            for name in ("active_pledges", "new_pledges", "cancelled_pledges", "churn_rate")
        }
        net = page.inner_text('#month-revenue tr[data-currency="eur"] td[data-figure="net"]')
        mrr_usd = page.inner_text('#summary tr[data-currency="usd"] td[data-figure="mrr"]')
        charts = page.evaluate(
            """() => window.dashboardCharts.map(chart => ({
                id: chart.canvas.id,
                points: chart.data.datasets.reduce((n, d) => n + d.data.length, 0),
                drawn: chart.canvas.width > 0 && chart.canvas.toDataURL().length > 2000,
            }))"""
        )
        mrr_series = page.evaluate(
            "() => window.dashboardCharts[0].data.datasets.map(d => [d.label, d.data])"
        )
        with page.expect_download() as download_info:
            page.click('a.download[href^="/v1/reports/revenue?"]')
        download = download_info.value
        revenue_csv = Path(download.path()).read_text()
        if screenshot := os.environ.get("DASHBOARD_SCREENSHOT"):
            page.screenshot(path=screenshot, full_page=True)
        browser.close()

    assert problems == []
    assert outside_requests == []
    assert figures == {
        "active_pledges": "4", "new_pledges": "1", "cancelled_pledges": "1", "churn_rate": "0.2000",
    }  # fmt: skip
    assert (net, mrr_usd) == ("€6.60", "$10.60")
    assert download.suggested_filename.startswith("revenue-")
    assert "2026-10-01,usd,1,1060,0,0,61,0,999" in revenue_csv.splitlines()
    assert [chart["id"] for chart in charts] == ["mrr-chart", "revenue-chart", "recovery-chart"]
    assert all(chart["points"] > 0 and chart["drawn"] for chart in charts)
    # MRR at month end, in major units: the movement report's figures.
    assert ["EUR", [15, 20, 16, 20]] in mrr_series
    assert ["USD", [8, 18.6, 18.6, 10.6]] in mrr_series
