"""What each email template is told: ledger rows as words and amounts in the reader's locale.

Context keys (every key is present; None when it does not apply to that mail):
newsroom{name, address, legal_line, support_email, url}, reader_name, manage_url, interval,
pledge_amount, amount, paid_date, receipt_number, period_start, period_end, update_url,
next_attempt_date, refund_amount, refund_date, endpoint{id, url, reason} (admin mail about a
disabled outgoing webhook endpoint); and for the manage page's confirmations: old_amount,
new_amount, old_interval, new_interval, card_brand, card_last4, resumes_date, links[{manage_url,
amount, interval, status}] (a requested manage link per pledge); decline_kind (why a payment
failed), card_expiry (MM/YYYY of the paying card), upgrade_url (a paid gift's "make it monthly").
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.i18n import format_day
from billing.models import EmailOutbox, Payment, Pledge, Reader, Refund
from billing.money import format_money
from billing.reader_links import manage_link, upgrade_link
from billing.settings import Settings
from workers.rendering import pick_locale

# Stripe's decline codes (https://docs.stripe.com/declines/codes) grouped by what the reader
# can do about them; `_why.txt` says each in words.
DECLINE_KINDS = {
    "expired_card": "expired_card",
    "insufficient_funds": "insufficient_funds",
    "card_velocity_exceeded": "insufficient_funds",
    "withdrawal_count_limit_exceeded": "insufficient_funds",
    "authentication_required": "authentication_required",
    "card_declined": "bank_refused",
    "generic_decline": "bank_refused",
    "do_not_honor": "bank_refused",
    "do_not_try_again": "bank_refused",
    "transaction_not_allowed": "bank_refused",
    "lost_card": "bank_refused",
    "stolen_card": "bank_refused",
    "pickup_card": "bank_refused",
    "restricted_card": "bank_refused",
    "security_violation": "bank_refused",
    "card_not_supported": "bank_refused",
}


def decline_kind(failure_code: str | None) -> str | None:
    """expired_card, insufficient_funds, authentication_required or bank_refused; None when no
    failure is known. A code we do not list is the bank's refusal without a reason."""
    if not failure_code:
        return None
    return DECLINE_KINDS.get(failure_code, "bank_refused")


def receipt_number(settings: Settings, payment: Payment) -> str:
    """Stable and unique: our own payment id, never reused."""
    return f"{settings.receipt_number_prefix}-{payment.id:08d}"


def email_context(session: Session, row: EmailOutbox, settings: Settings) -> dict[str, Any]:
    locale = pick_locale(row.locale)
    pledge = session.get(Pledge, row.pledge_id) if row.pledge_id is not None else None
    payment = session.get(Payment, row.payment_id) if row.payment_id is not None else None
    reader = _reader(session, row, pledge)

    def day(moment: datetime | None) -> str | None:
        return format_day(moment, locale) if moment else None

    def money(amount_minor: int, currency: str) -> str:
        return format_money(amount_minor, currency, locale)

    manage_url = manage_link(pledge.id) if pledge is not None else None
    refund = _refund(session, row)
    if row.context.get("stripe_refund_id") and refund is None:
        # The handler writes the refund before queuing its mail; a mail saying "None" is worse.
        raise LookupError(f"refund {row.context['stripe_refund_id']} is not in the ledger")
    if row.payment_id is not None and payment is None:
        raise LookupError(f"payment {row.payment_id} is not in the ledger")
    return {
        "newsroom": {
            "name": settings.newsroom_name,
            "address": settings.newsroom_address,
            "legal_line": settings.newsroom_legal_line,
            "support_email": settings.newsroom_support_email,
            "url": settings.newsroom_url,
        },
        "reader_name": reader.name if reader is not None else None,
        "manage_url": manage_url,
        "interval": pledge.interval if pledge is not None else None,
        "pledge_amount": money(pledge.charged_minor, pledge.currency) if pledge else None,
        "amount": money(payment.amount_minor, payment.currency) if payment else None,
        "paid_date": day(payment.paid_at) if payment else None,
        "receipt_number": receipt_number(settings, payment) if payment else None,
        "period_start": day(payment.period_start) if payment else None,
        "period_end": day(payment.period_end) if payment else None,
        "update_url": row.context.get("hosted_invoice_url") or manage_url,
        "next_attempt_date": day(payment.next_attempt_at) if payment else None,
        "refund_amount": money(refund.amount_minor, refund.currency) if refund else None,
        "refund_date": day(refund.refunded_at) if refund else None,
        "decline_kind": decline_kind(payment.failure_code) if payment else None,
        "card_expiry": _card_expiry(pledge),
        "upgrade_url": upgrade_link(pledge.id) if pledge and _upgradable(pledge) else None,
        "endpoint": row.context.get("endpoint"),
        **_manage_change(row.context, money, day),
    }


def _manage_change(
    stored: dict[str, Any],
    money: Callable[[int, str], str],
    day: Callable[[datetime | None], str | None],
) -> dict[str, Any]:
    """What a manage-page mail confirms, from the ids and amounts its row keeps."""
    currency = stored.get("currency")
    resumes_at = stored.get("resumes_at")
    links = [
        {
            "manage_url": link["manage_url"],
            "amount": money(link["amount_minor"], link["currency"]),
            "interval": link["interval"],
            "status": link["status"],
        }
        for link in stored.get("links") or []
    ]
    return {
        "old_amount": money(stored["old_amount_minor"], currency) if currency else None,
        "new_amount": money(stored["new_amount_minor"], currency) if currency else None,
        "old_interval": stored.get("old_interval"),
        "new_interval": stored.get("new_interval"),
        "card_brand": stored.get("card_brand"),
        "card_last4": stored.get("card_last4"),
        "resumes_date": day(datetime.fromisoformat(resumes_at)) if resumes_at else None,
        "links": links,
    }


def _card_expiry(pledge: Pledge | None) -> str | None:
    if pledge is None or not pledge.card_exp_month or not pledge.card_exp_year:
        return None
    return f"{pledge.card_exp_month:02d}/{pledge.card_exp_year}"


def _upgradable(pledge: Pledge) -> bool:
    """A paid one-time gift, which a "make it monthly" link may turn into a monthly pledge."""
    return pledge.interval == "once" and pledge.status == "active"


def _reader(session: Session, row: EmailOutbox, pledge: Pledge | None) -> Reader | None:
    if pledge is not None:
        return session.get(Reader, pledge.reader_id)
    return session.scalar(select(Reader).where(Reader.email == row.to_email))


def _refund(session: Session, row: EmailOutbox) -> Refund | None:
    stripe_refund_id = row.context.get("stripe_refund_id")
    if not stripe_refund_id:
        return None
    return session.scalar(select(Refund).where(Refund.stripe_refund_id == stripe_refund_id))
