"""Month exports carry the revenue report's figures to the cent, in every layout."""

import calendar
import csv
import io
from collections import defaultdict
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.reports_ledger import api_key, seed_ledger


@pytest.fixture
def finance(db: Session) -> dict[str, str]:
    seed_ledger(db)
    return {"Authorization": f"Bearer {api_key(db, 'finance')}"}


@pytest.mark.parametrize("month", ["2026-08", "2026-09", "2026-10"])
def test_the_month_journal_books_exactly_the_revenue_report(
    client: TestClient, finance: dict[str, str], month: str
) -> None:
    last_day = calendar.monthrange(int(month[:4]), int(month[5:]))[1]
    revenue = client.get(
        "/v1/reports/revenue", headers=finance,
        params={"from": f"{month}-01", "to": f"{month}-{last_day}", "granularity": "month"},
    ).json()["rows"]  # fmt: skip
    journal = client.get("/v1/reports/journal", headers=finance, params={"month": month})
    assert journal.status_code == 200, journal.text

    booked: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    lines = list(csv.DictReader(io.StringIO(journal.text)))
    for line in lines:
        booked[line["currency"].lower(), line["account"]] += Decimal(line["credit"] or 0) - Decimal(
            line["debit"] or 0
        )
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in revenue:
        key = row["currency"]
        expected[key, "4000 Reader gifts"] += Decimal(row["gross"]) / 100
        expected[key, "6100 Payment processing fees"] -= Decimal(row["fees"]) / 100
        expected[key, "4090 Refunds"] -= Decimal(row["refunded"]) / 100
        expected[key, "4095 Disputes"] -= Decimal(row["disputed"]) / 100
        expected[key, "1210 Stripe balance"] -= Decimal(row["net"]) / 100
    assert {k: v for k, v in booked.items() if v} == {k: v for k, v in expected.items() if v}
    assert lines, "the month has ledger lines"


def test_bank_statement_layouts_sum_to_the_months_net(
    client: TestClient, finance: dict[str, str]
) -> None:
    revenue = client.get(
        "/v1/reports/revenue", headers=finance,
        params={"from": "2026-09-01", "to": "2026-09-30", "currency": "eur"},
    ).json()["rows"]  # fmt: skip
    xero = client.get("/v1/reports/journal", headers=finance,
                      params={"month": "2026-09", "layout": "xero", "currency": "eur"})  # fmt: skip
    qbo = client.get("/v1/reports/journal", headers=finance,
                     params={"month": "2026-09", "layout": "qbo", "currency": "eur"})  # fmt: skip

    xero_rows = list(csv.DictReader(io.StringIO(xero.text)))
    qbo_rows = list(csv.DictReader(io.StringIO(qbo.text)))
    net = Decimal(revenue[0]["net"]) / 100
    assert sum(Decimal(row["Amount"]) for row in xero_rows) == net
    assert sum(Decimal(row["Amount"]) for row in qbo_rows) == net
    assert len(xero_rows) == len(qbo_rows)
    # A negative amount is a number, not a formula to neutralise.
    assert any(row["Amount"].startswith("-") for row in xero_rows)
