"""Annual giving statements: figures that tie out to the revenue report, numbers that never move,
downloads behind the manage link, and the admin-only report."""

import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import reset_caches
from billing.models import GivingStatement, Pledge, Reader
from billing.reader_links import manage_token
from billing.settings import get_settings
from billing.statements.service import build_statement
from tests.reports_ledger import Ledger, api_key, seed_ledger

# The reports ledger runs July to October 2026; from here on 2026 is a finished year.
AFTER_2026 = datetime(2027, 1, 20, 12, tzinfo=UTC)


@pytest.fixture
def ledger(db: Session) -> Ledger:
    return seed_ledger(db)


@pytest.fixture
def after_2026() -> Iterator[None]:
    with time_machine.travel(AFTER_2026, tick=True):
        yield


@pytest.fixture
def admin(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'admin')}"}


@pytest.fixture
def finance(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'finance')}"}


def reader_named(db: Session, name: str) -> Reader:
    return db.scalars(select(Reader).where(Reader.email == f"{name}@example.org")).one()


def token_of(db: Session, name: str) -> str:
    reader = reader_named(db, name)
    pledge = db.scalars(select(Pledge).where(Pledge.reader_id == reader.id)).first()
    assert pledge is not None
    return manage_token(pledge.id)


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def statement_sums(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int, int, int]]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        for index, name in enumerate(("gross", "refunded", "disputed", "net")):
            sums[row["currency"]][index] += row[name]
    return {currency: (g, r, d, n) for currency, (g, r, d, n) in sums.items()}


def revenue_sums(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int, int, int]]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        # A statement is what the reader gave: Stripe's fees are the newsroom's cost, not theirs.
        given = row["gross"] - row["refunded"] - row["disputed"]
        assert given == row["net"] + row["fees"]
        for index, value in enumerate((row["gross"], row["refunded"], row["disputed"], given)):
            sums[row["currency"]][index] += value
    return {currency: (g, r, d, n) for currency, (g, r, d, n) in sums.items()}


@pytest.mark.parametrize(
    ("fiscal_year_start", "timezone", "year", "today", "first_day", "last_day"),
    [
        ("01-01", "UTC", 2026, AFTER_2026, "2026-01-01", "2026-12-31"),
        # A UK-style year in Berlin: 2025/26 ends on 4 July 2026, inside the ledger's months.
        ("07-05", "Europe/Berlin", 2025, AFTER_2026, "2025-07-05", "2026-07-04"),
        ("07-05", "Europe/Berlin", 2026, datetime(2027, 8, 1, tzinfo=UTC),
         "2026-07-05", "2027-07-04"),
    ],
)  # fmt: skip
def test_statements_tie_out_to_the_revenue_report_to_the_cent(
    client: TestClient, ledger: Ledger, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    fiscal_year_start: str, timezone: str, year: int, today: datetime, first_day: str,
    last_day: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("FISCAL_YEAR_START", fiscal_year_start)
    monkeypatch.setenv("REPORTING_TIMEZONE", timezone)
    reset_caches()
    with time_machine.travel(today, tick=True):
        statements = client.get("/v1/reports/statements", params={"year": year}, headers=admin)
        revenue = client.get(
            "/v1/reports/revenue",
            params={"from": first_day, "to": last_day, "granularity": "month"},
            headers=admin,
        )
    monkeypatch.undo()
    reset_caches()

    assert statements.status_code == 200, statements.text
    report = statements.json()
    assert (report["from_date"], report["to_date"], report["complete"]) == (
        first_day, last_day, True,
    )  # fmt: skip
    assert report["rows"], "the ledger has payments in this fiscal year"
    assert statement_sums(report["rows"]) == revenue_sums(revenue.json()["rows"])
    for row in report["rows"]:
        assert row["net"] == row["gross"] - row["refunded"] - row["disputed"]
        assert row["statement_number"].startswith(f"S-{year}-")


def test_a_reader_statement_nets_refunds_and_shows_disputes(
    db: Session, ledger: Ledger, after_2026: None
) -> None:
    settings = get_settings()

    ada = build_statement(db, settings, reader=reader_named(db, "ada"), year=2026)
    cleo = build_statement(db, settings, reader=reader_named(db, "cleo"), year=2026)
    dan = build_statement(db, settings, reader=reader_named(db, "dan"), year=2026)
    db.commit()

    # Four payments of 5.00 (the last at 22:30 UTC on 30 September), 2.00 refunded.
    [eur] = ada.totals
    assert (eur.currency, eur.payments, eur.gross, eur.refunded, eur.disputed, eur.net) == (
        "eur", 4, 2000, 200, 0, 1800,
    )  # fmt: skip
    # Three payments of 10.60; September's disputed and lost.
    [usd] = cleo.totals
    assert (usd.gross, usd.refunded, usd.disputed, usd.net) == (3180, 0, 1060, 2120)
    # A dispute the newsroom won is shown but takes nothing off; the failed payment is absent.
    [usd] = dan.totals
    assert (usd.payments, usd.gross, usd.disputed, usd.net) == (2, 1600, 0, 1600)
    disputes = [line for line in dan.lines if line.kind == "dispute"]
    assert [(line.status, line.counted) for line in disputes] == [("won", False)]


def test_the_statement_number_is_given_once_and_never_changes(
    client: TestClient, db: Session, ledger: Ledger, admin: dict[str, str], after_2026: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    token = token_of(db, "ada")

    first = client.get(f"/manage/{token}/statements/2026.html")
    report = client.get("/v1/reports/statements", params={"year": 2026}, headers=admin).json()
    monkeypatch.setenv("STATEMENT_NUMBER_PREFIX", "GIFT")
    reset_caches()
    again = client.get(f"/manage/{token}/statements/2026.html")

    number = db.scalars(
        select(GivingStatement.number).where(
            GivingStatement.reader_id == reader_named(db, "ada").id
        )
    ).one()
    assert number.startswith("S-2026-")
    assert f'<dd id="statement-number">{number}</dd>' in first.text
    assert f'<dd id="statement-number">{number}</dd>' in again.text
    ada_rows = [row for row in report["rows"] if row["reader_email"] == "ada@example.org"]
    assert [row["statement_number"] for row in ada_rows] == [number]
    numbers = [row["statement_number"] for row in report["rows"]]
    assert len(set(numbers)) == len({row["reader_id"] for row in report["rows"]})


def test_reader_downloads_pdf_and_html_with_the_manage_page_headers(
    client: TestClient, db: Session, ledger: Ledger, after_2026: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("NEWSROOM_LEGAL_NAME", "Example News gGmbH")
    monkeypatch.setenv("NEWSROOM_ADDRESS", "1 Press Street, Berlin")
    monkeypatch.setenv("NEWSROOM_TAX_ID", "DE123456789")
    reset_caches()
    token = token_of(db, "ada")

    page = client.get(f"/manage/{token}")
    pdf = client.get(f"/manage/{token}/statements/2026.pdf")
    html = client.get(f"/manage/{token}/statements/2026.html")

    assert f'href="/manage/{token}/statements/2026.pdf"' in page.text
    assert "statements/2025" not in page.text
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("attachment; filename=")
    for response in (pdf, html):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
    text = pdf_text(pdf.content)
    for expected in ("Giving statement", "Example News gGmbH", "1 Press Street, Berlin",
                     "DE123456789", "€20.00", "€2.00", "€18.00", "ada@example.org"):  # fmt: skip
        assert expected in text, expected
        assert expected in html.text, expected


def test_statement_in_russian_prints_cyrillic(
    client: TestClient, db: Session, ledger: Ledger, after_2026: None
) -> None:
    reader = reader_named(db, "ada")
    reader.locale, reader.name = "ru", "Ада Лавлейс"
    db.commit()

    pdf = client.get(f"/manage/{token_of(db, 'ada')}/statements/2026.pdf")

    text = pdf_text(pdf.content)
    assert "Справка о пожертвованиях" in text  # noqa: RUF001  (Cyrillic on purpose)
    assert "Ада Лавлейс" in text
    assert "18,00\xa0€" in text or "18,00 €" in text


def test_statement_in_german_with_german_words_dates_and_amounts(
    client: TestClient, db: Session, ledger: Ledger, after_2026: None
) -> None:
    reader_named(db, "ada").locale = "de"
    db.commit()

    token = token_of(db, "ada")
    text = pdf_text(client.get(f"/manage/{token}/statements/2026.pdf").content)
    html = client.get(f"/manage/{token}/statements/2026.html").text
    future = client.get(f"/manage/{token}/statements/2027.pdf")

    for expected in ("Spendenübersicht", "Geschäftsjahr 2026", "Nettobeitrag", "18,00\xa0€",
                     "1. Januar 2026 bis 31. Dezember 2026"):  # fmt: skip
        assert expected in html, expected
    assert "Spendenübersicht" in text and "Nettobeitrag" in text
    assert '<html lang="de">' in html
    assert future.json()["message"] == "Das Geschäftsjahr 2027 ist noch nicht abgeschlossen."


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/manage/not-a-token/statements/2026.pdf", 404),
        ("/manage/{token}/statements/2027.pdf", 404),  # the year is not over
        ("/manage/{token}/statements/2024.html", 404),  # nothing given that year
        ("/manage/{token}/statements/99999.pdf", 404),
    ],
)
def test_no_statement_without_a_valid_link_and_a_finished_year_with_payments(
    client: TestClient, db: Session, ledger: Ledger, after_2026: None, path: str, status: int
) -> None:
    response = client.get(path.format(token=token_of(db, "ada")))

    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"


def test_an_erased_reader_has_no_statement(
    client: TestClient, db: Session, ledger: Ledger, after_2026: None
) -> None:
    token = token_of(db, "ada")
    reader_named(db, "ada").erased_at = AFTER_2026
    db.commit()

    assert client.get(f"/manage/{token}/statements/2026.pdf").status_code == 404


def test_statements_report_is_for_admin_keys_only(
    client: TestClient, db: Session, ledger: Ledger, admin: dict[str, str],
    finance: dict[str, str], after_2026: None,
) -> None:  # fmt: skip
    params = {"year": 2026}

    assert client.get("/v1/reports/statements", params=params).status_code == 401
    refused = client.get("/v1/reports/statements", params=params, headers=finance)
    as_csv = client.get("/v1/reports/statements", params=params | {"format": "csv"}, headers=admin)

    assert refused.status_code == 403
    assert "admin" in refused.json()["message"]
    assert as_csv.status_code == 200
    lines = as_csv.text.strip().splitlines()
    assert lines[0] == (
        "reader_id,reader_email,reader_name,statement_number,currency,payments,gross,"
        "refunded,disputed,net"
    )
    ada = next(line for line in lines if "ada@example.org" in line).split(",")
    assert ada[4:] == ["eur", "4", "2000", "200", "0", "1800"]


def test_the_running_year_is_reported_without_numbers(
    client: TestClient, ledger: Ledger, admin: dict[str, str]
) -> None:
    with time_machine.travel(datetime(2026, 11, 1, tzinfo=UTC), tick=True):
        report = client.get("/v1/reports/statements", params={"year": 2026}, headers=admin).json()

    assert report["complete"] is False
    assert report["rows"]
    assert {row["statement_number"] for row in report["rows"]} == {None}
