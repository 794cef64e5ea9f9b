"""Which emails a ledger change calls for: outbox rows written in the caller's transaction.

Webhook handlers and reader self-service call these after they change the ledger; each row's
dedupe key is built from Stripe's stable ids, so a repeated event never queues a second mail.
The send itself is enqueued after commit (task `SEND_DUE_TASK`, by name, once per transaction).

Keys, one mail each: `receipt:<invoice or payment intent>` (welcome, receipt, gift or recovery),
`reminder:<invoice>:<step>` (1 at once, then one per day in DUNNING_SCHEDULE_DAYS;
`reminder:<invoice>:after-card-update-<n>` if the card the reader updated fails too),
`ended:<pledge>` (cancellation or support ended) and `refund:<refund>`.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from billing.models import EmailOutbox, Payment, Pledge, PledgeStatus, Reader
from billing.outbox import (
    SEND_DUE_TASK,
    SEND_EMAIL_TASK,
    cancel_pending,
    outbox_row,
    queue_email,
    queue_emails,
)
from billing.settings import get_settings
from billing.task_queue import enqueue_after_commit

__all__ = [
    "REMINDER_TEMPLATES",
    "SEND_EMAIL_TASK",
    "card_updated",
    "payment_failed",
    "payment_succeeded",
    "pledge_canceled",
    "refund_created",
    "reminder_is_due_for",
    "reminder_key",
    "renewals_paid",
]

# Every mail that asks the reader to act on a failed payment; none may go out once it is settled.
REMINDER_TEMPLATES = frozenset(
    {"payment_failed", "update_card", "payment_reminder", "final_notice"}
)
# A payment in one of these states needs no reminder: the reader paid, or Stripe closed it.
_SETTLED_PAYMENT_STATUSES = frozenset({"paid", "refunded", "void"})
_ENDED_PLEDGE_STATUSES = frozenset({PledgeStatus.CANCELED, PledgeStatus.FAILED})


def reminder_key(invoice_id: str, step: int) -> str:
    return f"reminder:{invoice_id}:{step}"


def reminder_is_due_for(payment: Payment | None, pledge: Pledge | None) -> bool:
    """Whether a failed-payment reminder still makes sense for this ledger state."""
    if payment is None or payment.status in _SETTLED_PAYMENT_STATUSES:
        return False
    return pledge is None or pledge.status not in _ENDED_PLEDGE_STATUSES


def _queue(
    session: Session,
    *,
    key: str,
    template: str,
    reader: Reader,
    pledge: Pledge | None,
    payment: Payment | None = None,
    context: dict[str, Any] | None = None,
    status: str = "pending",
) -> bool:
    queued = queue_email(
        session,
        dedupe_key=key,
        template=template,
        to_email=reader.email,
        locale=pledge.locale if pledge is not None else reader.locale,
        context=context,
        pledge_id=pledge.id if pledge is not None else None,
        payment_id=payment.id if payment is not None else None,
        status=status,
    )
    if queued and status == "pending":
        # One wake-up however many mails the transaction queued (a batch of webhook events).
        enqueue_after_commit(session, SEND_DUE_TASK)
    return queued


def payment_succeeded(
    session: Session, *, reader: Reader, pledge: Pledge | None, payment: Payment, first: bool
) -> None:
    """A receipt for every paid invoice or gift; the first one also welcomes the reader.

    If the reader was already told this invoice failed, the receipt is the short "your payment
    went through" mail instead, and no further reminder goes out.
    """
    reminded = False
    if pledge is not None and payment.stripe_invoice_id is not None:
        reminded = _stop_reminders(session, pledge=pledge, invoice_id=payment.stripe_invoice_id)
    key, template = _receipt(pledge, payment, reminded=reminded, first=first)
    _queue(session, key=key, template=template, reader=reader, pledge=pledge, payment=payment)


def renewals_paid(session: Session, paid: Sequence[tuple[Reader, Pledge, Payment, bool]]) -> None:
    """`payment_succeeded` for (reader, pledge, payment, first) of invoices never seen before,
    in one INSERT: no reminder can exist for an invoice without a payment row."""
    emails = []
    for reader, pledge, payment, first in paid:
        key, template = _receipt(pledge, payment, reminded=False, first=first)
        emails.append(
            outbox_row(
                dedupe_key=key,
                template=template,
                to_email=reader.email,
                locale=pledge.locale,
                pledge_id=pledge.id,
                payment_id=payment.id,
            )
        )
    if queue_emails(session, emails):
        enqueue_after_commit(session, SEND_DUE_TASK)


def _receipt(
    pledge: Pledge | None, payment: Payment, *, reminded: bool, first: bool
) -> tuple[str, str]:
    """(dedupe key, template) of a paid payment's receipt."""
    if pledge is not None and pledge.interval == "once":
        template = "gift_receipt"
    elif reminded:
        template = "recovery_receipt"
    else:
        template = "welcome_receipt" if first else "receipt"
    return f"receipt:{payment.stripe_invoice_id or payment.stripe_payment_intent_id}", template


def payment_failed(
    session: Session,
    *,
    reader: Reader,
    pledge: Pledge,
    payment: Payment,
    hard_decline: bool,
    hosted_invoice_url: str | None = None,
) -> None:
    """The first reminder for a failed invoice, at once; later ones come from the dunning job.

    A failure reported after the invoice's receipt (events out of order) sends nothing.
    """
    invoice_id = payment.stripe_invoice_id
    if invoice_id is None or not reminder_is_due_for(payment, pledge):
        return
    if _exists(session, f"receipt:{invoice_id}"):
        return
    key = _key_for_new_failure(session, invoice_id)
    if key is None:  # Stripe retrying the same card: the dunning schedule speaks next
        return
    template = "update_card" if hard_decline else "payment_failed"
    context = {"hosted_invoice_url": hosted_invoice_url} if hosted_invoice_url else None
    _queue(
        session, key=key, template=template, reader=reader, pledge=pledge, payment=payment,
        context=context,
    )  # fmt: skip


def card_updated(session: Session, *, reader: Reader, pledge: Pledge) -> None:
    """The reader gave a new card: no more reminders for the invoices that failed before.

    Each open invoice gets a canceled `card-updated-<n>` row as a dated mark, so that if the new
    card fails too, the reader hears about it once (see `_key_for_new_failure`).
    """
    _stop_reminders(session, pledge=pledge, invoice_id=None)
    first_reminders = session.scalars(
        select(EmailOutbox).where(
            EmailOutbox.pledge_id == pledge.id,
            EmailOutbox.dedupe_key.startswith("reminder:", autoescape=True),
            EmailOutbox.dedupe_key.endswith(":1", autoescape=True),
        )
    ).all()
    for first in first_reminders:
        invoice_id = first.dedupe_key.removeprefix("reminder:").removesuffix(":1")
        marks = _card_update_marks(session, invoice_id)
        queue_email(
            session, dedupe_key=f"reminder:{invoice_id}:card-updated-{len(marks) + 1}",
            template=first.template, to_email=first.to_email, locale=first.locale,
            pledge_id=pledge.id, payment_id=first.payment_id, status="canceled",
        )  # fmt: skip


def _key_for_new_failure(session: Session, invoice_id: str) -> str | None:
    """The first reminder's key; after a card update, one fresh reminder's; else None."""
    if not _exists(session, reminder_key(invoice_id, 1)):
        return reminder_key(invoice_id, 1)
    marks = _card_update_marks(session, invoice_id)
    if not marks:
        return None
    latest_mark = max(marks, key=lambda mark: mark.created_at)
    mails_since = session.scalar(
        select(
            exists().where(
                EmailOutbox.dedupe_key.startswith(f"reminder:{invoice_id}:", autoescape=True),
                EmailOutbox.status != "canceled",
                EmailOutbox.created_at > latest_mark.created_at,
            )
        )
    )
    if mails_since:
        return None
    number = latest_mark.dedupe_key.rsplit("-", 1)[1]
    return f"reminder:{invoice_id}:after-card-update-{number}"


def _card_update_marks(session: Session, invoice_id: str) -> list[EmailOutbox]:
    prefix = f"reminder:{invoice_id}:card-updated-"
    query = select(EmailOutbox).where(EmailOutbox.dedupe_key.startswith(prefix, autoescape=True))
    return list(session.scalars(query.execution_options(populate_existing=True)))


def pledge_canceled(
    session: Session, *, reader: Reader, pledge: Pledge, after_failed_payments: bool
) -> None:
    """One mail when a pledge ends: a confirmation, or 'your support has ended', never both."""
    _stop_reminders(session, pledge=pledge, invoice_id=None)
    template = "support_ended" if after_failed_payments else "cancellation"
    _queue(session, key=f"ended:{pledge.id}", template=template, reader=reader, pledge=pledge)


def refund_created(
    session: Session, *, reader: Reader, pledge: Pledge | None, payment: Payment, refund_id: str
) -> None:
    _queue(
        session, key=f"refund:{refund_id}", template="refund", reader=reader, pledge=pledge,
        payment=payment, context={"stripe_refund_id": refund_id},
    )  # fmt: skip


def _stop_reminders(session: Session, *, pledge: Pledge, invoice_id: str | None) -> bool:
    """Cancel unsent reminders (one invoice's, or all the pledge's) and hold the later steps.

    Returns whether the reader may already have seen a reminder for that invoice. The
    cancellation runs first so that a send claimed meanwhile counts as seen, not missed.
    """
    prefix = "reminder:" if invoice_id is None else f"reminder:{invoice_id}:"
    cancel_pending(session, pledge_id=pledge.id, key_prefix=prefix)
    reminders = session.scalars(
        select(EmailOutbox)
        .where(
            EmailOutbox.pledge_id == pledge.id,
            EmailOutbox.dedupe_key.startswith(prefix, autoescape=True),
        )
        # Fresh statuses: the UPDATE above and other workers' sends are not in this session yet.
        .execution_options(populate_existing=True)
    ).all()
    later_steps = range(2, len(get_settings().dunning_schedule_days) + 2)
    for first in [row for row in reminders if row.dedupe_key.endswith(":1")]:
        reminded_invoice = first.dedupe_key.removeprefix("reminder:").removesuffix(":1")
        for step in later_steps:
            # A canceled row holds the key: the dunning job can never queue this step again.
            queue_email(
                session, dedupe_key=reminder_key(reminded_invoice, step),
                template="payment_reminder", to_email=first.to_email, locale=first.locale,
                pledge_id=pledge.id, payment_id=first.payment_id, status="canceled",
            )  # fmt: skip
    return any(row.status in ("sending", "sent") for row in reminders)


def _exists(session: Session, key: str) -> bool:
    return bool(session.scalar(select(exists().where(EmailOutbox.dedupe_key == key))))
