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
from decimal import Decimal

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


def major(amount_minor: int, currency: str) -> Decimal:
    """Exact major units with the currency's decimals: 1234 eur → 12.34, never a float."""
    exponent = CURRENCY_EXPONENTS[currency.lower()]
    return Decimal(amount_minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def signed_minor(line: JournalLine) -> int:
    """The line's effect on the Stripe balance."""
    return line.amount_minor if KINDS[line.kind][1] else -line.amount_minor


def rows_for(line: JournalLine, layout: str, settings: Settings) -> list[list[str | int]]:
    account_name, money_in, description = KINDS[line.kind]
    other = str(getattr(settings, account_name))
    amount = str(major(line.amount_minor, line.currency))
    signed = str(major(signed_minor(line), line.currency))
    reference, text = cell(line.reference), cell(f"{description} ({line.currency.upper()})")
    if layout == "journal":
        balance = settings.account_stripe_balance
        debit_account, credit_account = (balance, other) if money_in else (other, balance)
        return [
            [line.on.isoformat(), cell(debit_account), amount, "", line.currency.upper(),
             reference, text],
            [line.on.isoformat(), cell(credit_account), "", amount, line.currency.upper(),
             reference, text],
        ]  # fmt: skip
    if layout == "xero":
        return [[line.on.isoformat(), signed, "Stripe", text, reference, cell(other)]]
    return [[line.on.strftime("%m/%d/%Y"), f"{text} {reference}", signed]]


def csv_export(lines: Iterable[JournalLine], layout: str, settings: Settings) -> Iterator[str]:
    """The header, then the rows of each line as the lines arrive."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADERS[layout])
    for line in lines:
        writer.writerows(rows_for(line, layout, settings))
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
