"""Money arithmetic: integers in, integers out, shown the way a reader reads them."""

import pytest

from billing.money import fee_cover_minor, format_money, minor_per_major, to_minor


@pytest.mark.parametrize(
    ("amount", "basis_points", "fixed", "extra"),
    [(500, 290, 30, 46), (200, 290, 30, 37), (10_000, 150, 25, 178), (500, 0, 0, 0)],
)
def test_fee_cover_leaves_the_newsroom_at_least_the_pledged_amount(
    amount: int, basis_points: int, fixed: int, extra: int
) -> None:
    gross = amount + fee_cover_minor(amount, basis_points, fixed)
    fee_charged = gross * basis_points / 10_000 + fixed

    assert gross - amount == extra
    assert gross - fee_charged >= amount
    # One cent less would leave the newsroom short: the extra is the smallest that works.
    assert (gross - 1) - ((gross - 1) * basis_points / 10_000 + fixed) < amount or extra == 0


def test_zero_decimal_currencies_have_no_minor_units() -> None:
    assert minor_per_major("JPY") == 1 and to_minor(2, "jpy") == 2
    assert minor_per_major("eur") == 100 and to_minor(2, "eur") == 200


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "shown"),
    [
        (500, "eur", "en", "€5.00"),
        (500, "eur", "ru", "5,00\xa0€"),
        (123456, "usd", "en", "$1,234.56"),
        (1, "gbp", "en", "£0.01"),
        (500, "jpy", "en", "¥500"),
        (-250, "eur", "en", "-€2.50"),
    ],
)
def test_format_money_is_exact_and_localised(
    amount: int, currency: str, locale: str, shown: str
) -> None:
    assert format_money(amount, currency, locale) == shown
