"""Month exports carry the revenue report's figures to the cent, in every layout."""

import calendar
import csv
import io
from collections import defaultdict
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from billing.payouts import service
from billing.payouts.exports import LAYOUTS, JournalLine, csv_export
from billing.payouts.queries import MONTH_LINES_ORDER, MONTH_LINES_SQL
from billing.reports.params import parse_period
from billing.settings import Settings
from tests.reports_ledger import LedgerBuilder, api_key, at, seed_ledger


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


# Cells a spreadsheet could run, quotes, separators, line breaks and plain numbers.
AWKWARD = [
    "=1+2",
    "a,b",
    'say "hi"',
    "-1404",
    "x;@y",
    "  +lead",
    "line\nbreak",
    "tab\t-x",
    "",
    "é_1",
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_postgresql_writes_the_bytes_csv_export_writes(db: Session, layout: str) -> None:
    ledger = seed_ledger(db)
    b = LedgerBuilder(db)
    b.ledger = ledger
    b.pledge("yen", "kei", 1500, "jpy", "month", at(10, 3))
    for n, reference in enumerate(AWKWARD):
        b.payment(f"odd{n}", "yen", 1500 + n, at(10, 3, 23, n), fee=-n, stripe_charge_id=reference)
        b.refund(f"odd{n}", f"odd{n}", 100, at(10, 5), "succeeded")
        db.execute(text("UPDATE refunds SET stripe_refund_id = :id WHERE stripe_refund_id = :old"),
                   {"id": f"{reference}!", "old": f"re_odd{n}"})  # fmt: skip
    db.commit()
    settings = Settings(
        account_fees="=HYPERLINK(1)", account_donations='4000 "Gifts", readers',
        account_stripe_balance="1210;+Stripe", account_refunds="",
    )  # fmt: skip
    currency = None if layout == "journal" else "jpy"
    period = parse_period("2026-10-01", "2026-10-31", currency, "Europe/Berlin", 1)

    entries = db.execute(
        text(f"SELECT kind, (at AT TIME ZONE :tz)::date, amount, fee, currency, reference"
             f" FROM ({MONTH_LINES_SQL.format(currency='')}) AS l {MONTH_LINES_ORDER}"),
        {"tz": period.timezone, "start_at": period.start_at, "end_at": period.end_at},
    )  # fmt: skip
    lines = []  # as the export read them before PostgreSQL wrote it: a line, then its fee line
    for kind, on, amount, fee, code, reference in entries:
        if currency in (None, code):
            lines.append(JournalLine(kind, on, amount, code, reference or ""))
            if fee:
                lines.append(JournalLine("fee", on, fee, code, reference or ""))
    written_here = "".join(csv_export(lines, layout, settings))
    written_there = "".join(service.month_export(period=period, layout=layout, settings=settings))

    assert written_there == written_here
    # The awkward references reached the export, neutralised and quoted.
    assert "'=1+2" in written_here and "x;'@y" in written_here and 'say ""hi""' in written_here


def test_a_currency_without_a_known_exponent_stops_the_month_export(db: Session) -> None:
    b = LedgerBuilder(db)
    b.pledge("odd", "odd", 500, "xts", "month", at(10, 3))
    b.payment("odd", "odd", 500, at(10, 3), fee=30)
    db.commit()
    period = parse_period("2026-10-01", "2026-10-31", None, "UTC", 1)

    with pytest.raises(ValueError, match="xts"):
        list(service.month_export(period=period, layout="journal", settings=Settings()))
