"""Ledger lines as accountants import them: a double-entry journal, Xero's and QuickBooks
Online's bank-statement CSV layouts, with accounts from settings.

The statements describe the Stripe balance as a bank account of its own (a clearing account):
gifts come in, fees, refunds and disputes go out, and a payout moves the rest to the bank.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from string import Formatter

from billing.money import CURRENCY_EXPONENTS
from billing.reports.csv_export import SQL_CELL, SQL_CSV_FIELD, cell
from billing.settings import Settings

LAYOUTS = ("journal", "xero", "qbo")
# kind → (settings attribute of the other account, money into the Stripe balance?, description)
KINDS: dict[str, tuple[str, bool, str]] = {
    "gift": ("account_donations", True, "Reader gift"),
    "fee": ("account_fees", False, "Stripe fee"),
    "fee_refund": ("account_fees", True, "Stripe fee returned"),
    "refund": ("account_refunds", False, "Refund to reader"),
    "dispute": ("account_disputes", False, "Dispute (chargeback)"),
    "dispute_reversal": ("account_disputes", True, "Dispute won, money returned"),
    "payout": ("account_bank", False, "Payout to bank"),
}
HEADERS = {
    "journal": ["date", "account", "debit", "credit", "currency", "reference", "description"],
    # Xero's precoded bank statement: Date, Amount, Payee, Description, Reference, then the
    # account code that pre-fills the reconciliation.
    "xero": ["Date", "Amount", "Payee", "Description", "Reference", "AccountCode"],
    # QuickBooks Online's 3-column bank upload: one signed amount.
    "qbo": ["Date", "Description", "Amount"],
}


@dataclass(frozen=True)
class JournalLine:
    kind: str
    on: date
    amount_minor: int  # always positive; the kind says which way the money went
    currency: str
    reference: str


def major(amount_minor: int, currency: str) -> str:
    """Exact major units with the currency's decimals: 1234 eur → "12.34", never a float."""
    exponent = CURRENCY_EXPONENTS[currency.lower()]
    if exponent == 0:
        return str(amount_minor)
    whole, part = divmod(abs(amount_minor), 10**exponent)
    return f"{'-' if amount_minor < 0 else ''}{whole}.{part:0{exponent}d}"


def signed_minor(line: JournalLine) -> int:
    """The line's effect on the Stripe balance."""
    return line.amount_minor if KINDS[line.kind][1] else -line.amount_minor


@dataclass(frozen=True)
class Booking:
    """How one kind of line is booked, worked out once per export from the settings."""

    other_account: str
    money_in: bool
    description: str


def bookings(settings: Settings) -> dict[str, Booking]:
    return {
        kind: Booking(str(getattr(settings, account)), money_in, description)
        for kind, (account, money_in, description) in KINDS.items()
    }


def rows_for(
    line: JournalLine, layout: str, booking: Booking, balance_account: str
) -> list[list[str | int]]:
    amount = major(line.amount_minor, line.currency)
    signed = amount if booking.money_in else major(-line.amount_minor, line.currency)
    code = line.currency.upper()
    reference, text = cell(line.reference), cell(f"{booking.description} ({code})")
    other = cell(booking.other_account)
    if layout == "journal":
        debit, credit = (balance_account, other) if booking.money_in else (other, balance_account)
        day = line.on.isoformat()
        return [
            [day, debit, amount, "", code, reference, text],
            [day, credit, "", amount, code, reference, text],
        ]
    if layout == "xero":
        return [[line.on.isoformat(), signed, "Stripe", text, reference, other]]
    return [[line.on.strftime("%m/%d/%Y"), f"{text} {reference}", signed]]


def csv_export(lines: Iterable[JournalLine], layout: str, settings: Settings) -> Iterator[str]:
    """The header, then the rows of each line as the lines arrive."""
    booked, balance = bookings(settings), str(cell(settings.account_stripe_balance))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADERS[layout])
    for line in lines:
        writer.writerows(rows_for(line, layout, booked[line.kind], balance))
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# rows_for() spelt in SQL, for a month's export: PostgreSQL writes its hundreds of thousands of
# lines, too many to format one by one here. An entry `l` (at, currency, reference, amount and a
# payment's fee) is one line, or a gift and its fee line, booked by `b` and `f` (booking_table(),
# accounts and descriptions made cells once). Tests hold both spellings to the same bytes.
SQL_ROW_TEMPLATES = {
    "journal": (
        "{day},{debit},{amount},,{code},{reference},{description}\r\n"
        "{day},{credit},,{amount},{code},{reference},{description}\r\n"
    ),
    "xero": "{day},{signed},Stripe,{description},{reference},{other}\r\n",
    "qbo": "{day},{description_and_reference},{signed}\r\n",
}
SQL_DAY_FORMATS = {"journal": "YYYY-MM-DD", "xero": "YYYY-MM-DD", "qbo": "MM/DD/YYYY"}
SQL_MAJOR = (
    "CASE WHEN b.exponent = 0 THEN ({0})::text ELSE CASE WHEN {0} < 0 THEN '-' ELSE '' END"
    " || (abs({0}) / b.scale)::text || '.' || lpad((abs({0}) % b.scale)::text, b.exponent, '0')"
    " END"
)
# Stripe's ids, letters, digits and underscores, are left alone by cell() and never quoted: the
# one regular expression most lines need.
SQL_PLAIN_ID = "l.reference ~ '^[A-Za-z0-9_]*$'"
SQL_REFERENCE_CELL = SQL_CELL.format("coalesce(l.reference, '')")


def _slots(booking: str, amount: str) -> dict[str, str]:
    """What fills each slot of a row template, for a line of `amount` booked by `booking`."""
    signed = f"CASE WHEN {booking}.money_in THEN {amount} ELSE -{amount} END"
    return {
        "day": "to_char(l.at AT TIME ZONE :tz, :day_format)",
        "code": "b.code",
        "reference": (
            f"CASE WHEN {SQL_PLAIN_ID} THEN l.reference "
            f"ELSE {SQL_CSV_FIELD.format(SQL_REFERENCE_CELL)} END"
        ),
        "amount": SQL_MAJOR.format(amount),
        "signed": SQL_MAJOR.format(signed),
        "debit": f"{booking}.debit",
        "credit": f"{booking}.credit",
        "other": f"{booking}.other",
        "description": f"{booking}.description",
        # QuickBooks takes the description and the reference in one cell.
        "description_and_reference": SQL_CSV_FIELD.format(
            f"{booking}.description_cell || ' ' || "
            f"CASE WHEN {SQL_PLAIN_ID} THEN l.reference ELSE {SQL_REFERENCE_CELL} END"
        ),
    }


def _format(layout: str, lines: list[tuple[str, str]]) -> str:
    """format() of the layout's rows for each (booking, amount), every value passed once: a gift
    and its fee line share their date and reference."""
    values: list[str] = []
    rows = ""
    for booking, amount in lines:
        slots = _slots(booking, amount)
        for text, slot, _spec, _conversion in Formatter().parse(SQL_ROW_TEMPLATES[layout]):
            rows += text.replace("'", "''").replace("\r", "\\r").replace("\n", "\\n")
            if slot:
                if slots[slot] not in values:
                    values.append(slots[slot])
                rows += f"%{values.index(slots[slot]) + 1}$s"
    return f"format(E'{rows}', {', '.join(values)})"


def sql_rows(layout: str) -> str:
    """An entry's rows in the layout, as an SQL expression over `l`, `b` and `f`."""
    line, and_fee = [("b", "l.amount")], [("b", "l.amount"), ("f", "l.fee")]
    return (
        f"CASE WHEN coalesce(l.fee, 0) = 0 THEN {_format(layout, line)} "
        f"ELSE {_format(layout, and_fee)} END"
    )


def booking_table(settings: Settings) -> str:
    """Every kind of line in every currency, its account and description already cells, as JSON
    rows for the month export's SQL."""
    return json.dumps(
        [
            {
                "kind": kind, "currency": currency, "exponent": exponent, "scale": 10**exponent,
                "money_in": booking.money_in, "other": cell(booking.other_account),
                "description": cell(f"{booking.description} ({currency.upper()})"),
            }
            for kind, booking in bookings(settings).items()
            for currency, exponent in CURRENCY_EXPONENTS.items()
        ]
    )  # fmt: skip
