"""CSV exports: the same figures as the JSON, stable columns, and nothing a spreadsheet executes."""

import csv
import io
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from billing.models import Pledge
from billing.reports.csv_export import PLAIN_NUMBER, cell
from tests.reports_ledger import Ledger, LedgerBuilder, api_key, at, seed_ledger

PERIOD = {"from": "2026-07-01", "to": "2026-10-31"}


@pytest.fixture
def ledger(db: Session) -> Ledger:
    return seed_ledger(db)


@pytest.fixture
def admin(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'admin')}"}


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def as_csv_text(row: dict[str, Any]) -> dict[str, str]:
    """What a JSON row looks like once written to CSV and read back as text."""
    return {key: "" if value is None else str(value) for key, value in row.items()}


@pytest.mark.parametrize(
    ("path", "rows_of"),
    [
        ("/v1/reports/summary", lambda report: report["by_currency"]),
        ("/v1/reports/revenue", lambda report: report["rows"]),
        ("/v1/reports/movement", lambda report: report["rows"]),
        ("/v1/reports/recovery", lambda report: report["rows"] + report["totals"]),
        ("/v1/reports/attribution", lambda report: report["rows"]),
    ],
)
def test_report_csv_parsed_back_equals_the_json(
    client: TestClient, ledger: Ledger, admin: dict[str, str], path: str, rows_of: Any
) -> None:
    report = client.get(path, headers=admin, params=PERIOD).json()

    response = client.get(path, headers=admin, params=PERIOD | {"format": "csv"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    rows = rows_of(report)
    assert rows, "the ledger gives every report some rows"
    assert parse_csv(response.text) == [as_csv_text(row) for row in rows]


@pytest.mark.parametrize("path", ["/v1/reports/pledges", "/v1/reports/payments"])
def test_list_csv_holds_every_item_of_every_page(
    client: TestClient, ledger: Ledger, admin: dict[str, str], path: str
) -> None:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(path, headers=admin, params={"limit": 4, "cursor": cursor}).json()
        items += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break

    response = client.get(path, headers=admin | {"Accept": "text/csv"})

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert parse_csv(response.text) == [as_csv_text(item) for item in items]


def test_csv_columns_are_stable(client: TestClient, ledger: Ledger, admin: dict[str, str]) -> None:
    response = client.get("/v1/reports/revenue", headers=admin, params={"format": "csv"})

    header = response.text.splitlines()[0]
    assert header == (
        "period,currency,payments,gross,refunded,disputed,fees,fees_unknown_payments,net"
    )


def test_an_empty_report_is_a_csv_with_only_the_header(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.get("/v1/reports/recovery", headers=admin, params={"format": "csv"})

    assert response.text.splitlines() == [
        "period,currency,failed,failed_amount,recovered,recovered_amount,"
        "recovered_after_reminder_1,recovered_after_reminder_2,"
        "recovered_after_reminder_3_or_more,lost,lost_amount,still_retrying,recovery_rate"
    ]


def cells_as_a_spreadsheet_splits_them(text: str, separator: str) -> list[str]:
    """Every cell a spreadsheet sees when it splits the CSV on `separator` (its locale's)."""
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    return [piece for row in rows for value in row for piece in value.splitlines() or [""]]


def is_formula(value: str) -> bool:
    stripped = value.lstrip(" ")
    return stripped[:1] in tuple("=+-@\t\r") and not PLAIN_NUMBER.fullmatch(stripped)


HOSTILE = {
    '=HYPERLINK("http://evil.example","x")': '\'=HYPERLINK("http://evil.example","x")',
    "+1+2": "'+1+2",
    "-2+3": "'-2+3",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\t=1": "'\t'=1",
    "\r=1": "'\r'=1",
    # Harmless in a comma locale, a formula where the spreadsheet splits on ; or | or tabs.
    'x;=WEBSERVICE("http://evil.example")': 'x;\'=WEBSERVICE("http://evil.example")',
    "spring; -cmd|' /C calc'!A0": "spring; '-cmd|' /C calc'!A0",
    "a|+1": "a|'+1",
    "a\t@SUM(1)": "a\t'@SUM(1)",
    "first line\n=1": "first line\n'=1",
}


@pytest.mark.parametrize("hostile", HOSTILE)
def test_formula_injection_is_neutralised_in_every_csv(
    client: TestClient, db: Session, admin: dict[str, str], hostile: str
) -> None:
    builder = LedgerBuilder(db)
    pledge = builder.pledge(
        "evil", "mallory", 500, "eur", "month", at(10, 2),
        campaign=hostile, source=hostile, article_url=hostile,
    )  # fmt: skip
    builder.readers["mallory"].name = hostile
    db.commit()

    pledges = client.get("/v1/reports/pledges", headers=admin, params={"format": "csv"})
    attribution = client.get(
        "/v1/reports/attribution", headers=admin, params=PERIOD | {"format": "csv"}
    )

    (row,) = parse_csv(pledges.text)
    neutral = HOSTILE[hostile]
    assert (row["campaign"], row["source"], row["article_url"]) == (neutral, neutral, neutral)
    assert row["reader_name"] == neutral
    assert {r["value"] for r in parse_csv(attribution.text)} == {neutral}
    for separator in (",", ";", "\t", "|"):
        for text in (pledges.text, attribution.text):
            cells = cells_as_a_spreadsheet_splits_them(text, separator)
            assert not [c for c in cells if is_formula(c)], separator
    # The JSON is data, not a spreadsheet: it keeps the value exactly.
    item = client.get("/v1/reports/pledges", headers=admin).json()["items"][0]
    assert item["campaign"] == hostile
    assert db.get(Pledge, pledge.id) is not None


def test_negative_figures_stay_numbers_in_csv() -> None:
    assert cell(-1404) == -1404
    # A plain number cannot execute, so it stays a number whether we or a reader wrote it.
    assert cell("-1404") == "-1404"
    assert cell("-0.25") == "-0.25"
    assert cell("-1404+1") == "'-1404+1"
    assert cell("2026-07-01") == "2026-07-01"
    assert cell("https://news.example/a?b=1&c=-2") == "https://news.example/a?b=1&c=-2"
    assert cell(None) == ""
    assert cell(uuid.UUID(int=0)) == "00000000-0000-0000-0000-000000000000"
