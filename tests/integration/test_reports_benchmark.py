"""The benchmark's generator keeps working with the schema: a tiny run prints every report."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "reports_benchmark.py"


def test_benchmark_runs_every_report_on_a_small_ledger_and_drops_its_database(
    postgres_admin_url: str,
) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--pledges", "2000", "--payments", "20000",
         "--repeat", "1"],
        env={**os.environ, "BENCH_POSTGRES_ADMIN_URL": postgres_admin_url},
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "ledger: 2,000 pledges, 20,000 payments" in result.stdout
    for report in (
        "summary",
        "revenue",
        "movement",
        "recovery",
        "attribution",
        "payments list",
        "payouts, last month",
        "month export",
        "cohorts by month",
    ):
        assert report in result.stdout
    database = result.stdout.split("database ", 1)[1].split()[0]
    assert f"dropped database {database}" in result.stdout
    with psycopg.connect(postgres_admin_url) as admin:
        left = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchall()
    assert left == []
