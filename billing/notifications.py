"""Which emails a ledger change calls for: outbox rows written in the caller's transaction.

Webhook handlers and reader self-service call these after they change the ledger; each row's
dedupe key is built from Stripe's stable ids, so a repeated event never queues a second mail.
The send itself is enqueued after commit (task `SEND_EMAIL_TASK`, by name).
"""

from sqlalchemy.orm import Session

from billing.models import Payment, Pledge, Reader
from billing.outbox import queue_email
from billing.task_queue import enqueue_after_commit

SEND_EMAIL_TASK = "workers.emails.send_email"


def _queue(
    session: Session,
    *,
    key: str,
    template: str,
    reader: Reader,
    pledge: Pledge | None,
    payment: Payment | None = None,
) -> bool:
    queued = queue_email(
        session,
        dedupe_key=key,
        template=template,
        to_email=reader.email,
        locale=pledge.locale if pledge is not None else reader.locale,
        pledge_id=pledge.id if pledge is not None else None,
        payment_id=payment.id if payment is not None else None,
    )
    if queued:
        enqueue_after_commit(session, SEND_EMAIL_TASK, key)
    return queued


def payment_succeeded(
    session: Session, *, reader: Reader, pledge: Pledge | None, payment: Payment, first: bool
) -> None:
    """A receipt for every paid invoice or gift; the first one also welcomes the reader."""
    stripe_id = payment.stripe_invoice_id or payment.stripe_payment_intent_id
    if pledge is not None and pledge.interval == "once":
        template = "gift_receipt"
    else:
        template = "welcome_receipt" if first else "receipt"
    _queue(
        session, key=f"receipt:{stripe_id}", template=template, reader=reader, pledge=pledge,
        payment=payment,
    )  # fmt: skip


def payment_failed(
    session: Session, *, reader: Reader, pledge: Pledge, payment: Payment, hard_decline: bool
) -> None:
    """The first reminder for a failed invoice, at once."""
    template = "update_card" if hard_decline else "payment_failed"
    _queue(
        session, key=f"reminder:{payment.stripe_invoice_id}:1", template=template, reader=reader,
        pledge=pledge, payment=payment,
    )  # fmt: skip


def pledge_canceled(
    session: Session, *, reader: Reader, pledge: Pledge, after_failed_payments: bool
) -> None:
    """One mail when a pledge ends: a confirmation, or 'your support has ended', never both."""
    template = "support_ended" if after_failed_payments else "cancellation"
    _queue(session, key=f"ended:{pledge.id}", template=template, reader=reader, pledge=pledge)


def refund_created(
    session: Session, *, reader: Reader, pledge: Pledge | None, payment: Payment, refund_id: str
) -> None:
    _queue(
        session, key=f"refund:{refund_id}", template="refund", reader=reader, pledge=pledge,
        payment=payment,
    )  # fmt: skip
