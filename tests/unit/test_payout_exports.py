"""Money in exports is exact text from integers, and account names cannot become formulas."""

import csv
import io
from datetime import date

import pytest

from billing.payouts.exports import JournalLine, csv_export, major
from billing.settings import Settings


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(1396, "eur", "13.96"), (-1396, "eur", "-13.96"), (5, "eur", "0.05"), (-5, "usd", "-0.05"),
     (0, "gbp", "0.00"), (1200, "jpy", "1200"), (-1200, "jpy", "-1200")],
)  # fmt: skip
def test_major_units_are_exact(minor: int, currency: str, text: str) -> None:
    assert major(minor, currency) == text


def test_an_account_name_that_looks_like_a_formula_is_neutralised() -> None:
    settings = Settings(account_fees="=HYPERLINK(1)")
    line = JournalLine("fee", date(2026, 10, 3), 45, "eur", "ch_a")

    rows = list(csv.reader(io.StringIO("".join(csv_export([line], "xero", settings)))))

    assert rows[1] == [
        "2026-10-03",
        "-0.45",
        "Stripe",
        "Stripe fee (EUR)",
        "ch_a",
        "'=HYPERLINK(1)",
    ]
