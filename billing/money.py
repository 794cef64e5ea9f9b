"""Money as integer minor units plus an ISO currency: exponents, fee cover, display."""

from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency

# ISO 4217 exponents for the currencies Stripe settles cards in that a newsroom is likely to use.
# Stripe's zero-decimal currencies have exponent 0 (https://docs.stripe.com/currencies).
CURRENCY_EXPONENTS: dict[str, int] = {
    "aud": 2, "brl": 2, "cad": 2, "chf": 2, "czk": 2, "dkk": 2, "eur": 2, "gbp": 2,
    "hkd": 2, "huf": 2, "ils": 2, "inr": 2, "jpy": 0, "krw": 0, "mxn": 2, "nok": 2,
    "nzd": 2, "pln": 2, "ron": 2, "sek": 2, "sgd": 2, "uah": 2, "usd": 2, "zar": 2,
}  # fmt: skip


def minor_per_major(currency: str) -> int:
    return int(10 ** CURRENCY_EXPONENTS[currency.lower()])


def to_minor(major: int, currency: str) -> int:
    return major * minor_per_major(currency)


def fee_cover_minor(amount_minor: int, basis_points: int, fixed_minor: int) -> int:
    """The extra that makes the newsroom receive `amount_minor` after a percentage + fixed fee.

    gross - (gross * bp / 10000 + fixed) >= amount, rounded up so the newsroom never falls short.
    """
    numerator = (amount_minor + fixed_minor) * 10_000
    denominator = 10_000 - basis_points
    gross = -(-numerator // denominator)
    return gross - amount_minor


# Mails format the same few amounts over and over, and babel takes a while each time.
@lru_cache(maxsize=4096)
def format_money(amount_minor: int, currency: str, locale: str = "en") -> str:
    """'5,00 €' for ('500', 'eur', 'ru'): exact, from integers, in the reader's locale."""
    amount = Decimal(amount_minor).scaleb(-CURRENCY_EXPONENTS[currency.lower()])
    return str(format_currency(amount, currency.upper(), locale=locale))
