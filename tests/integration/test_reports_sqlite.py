"""On the embedded SQLite database the reports say plainly that they need PostgreSQL."""

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from billing.db import build_engine
from billing.migrate import upgrade
from billing.reports import queries
from billing.reports.params import ReportError, parse_period


def test_reports_on_sqlite_ask_for_postgresql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pledges.db'}"
    upgrade(url)
    engine = build_engine(url)
    period = parse_period("2026-10-01", "2026-10-31", None, "UTC", 1)

    with Session(engine) as session, pytest.raises(ReportError) as refused:
        queries.revenue(session, period, "month")

    assert refused.value.status_code == 501
    assert "need PostgreSQL" in refused.value.message
    engine.dispose()
