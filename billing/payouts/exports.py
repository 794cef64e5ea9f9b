"""Ledger lines as accountants import them: a double-entry journal, Xero's and QuickBooks
Online's bank-statement CSV layouts, with accounts from settings.

The statements describe the Stripe balance as a bank account of its own (a clearing account):
gifts come in, fees, refunds and disputes go out, and a payout moves the rest to the bank.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from billing.money import CURRENCY_EXPONENTS
from billing.reports.csv_export import cell
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
