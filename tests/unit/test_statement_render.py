"""A statement renders the reader's own words as text, never as markup the renderer acts on."""

import io
from datetime import date

from pypdf import PdfReader

from billing.settings import Settings
from billing.statements.fiscal import fiscal_year
from billing.statements.render import render_html, render_pdf
from billing.statements.service import CurrencyTotals, Statement, StatementLine


def statement(reader_name: str, locale: str = "en") -> Statement:
    gift = StatementLine("gift", date(2025, 3, 5), "R-00000001", "once", "jpy", 5000, "paid", True)
    return Statement(
        number="S-2025-000001", fiscal=fiscal_year(2025, "01-01", "UTC"),
        reader_name=reader_name, reader_email="reader@example.org", locale=locale,
        issued_on=date(2026, 1, 15), lines=[gift], totals=[CurrencyTotals("jpy", 1, 5000)],
    )  # fmt: skip


def test_a_name_with_markup_is_printed_not_obeyed() -> None:
    name = '<img src="file:///etc/passwd"> Bobby'
    settings = Settings(_env_file=None)

    html = render_html(statement(name), settings)
    pdf = render_pdf(statement(name), settings)

    assert "&lt;img" in html and "<img" not in html
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert '<img src="file:///etc/passwd"> Bobby' in text
    # A zero-decimal currency keeps its integer amount.
    assert "¥5,000" in text
