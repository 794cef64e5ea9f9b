"""Later failed-payment reminders: the periodic job that queues each one when the schedule says.

The first reminder goes out at once (billing.notifications.payment_failed). For every invoice
whose first reminder went out and which is still unpaid, this job queues reminder step k
(k ≥ 2) once DUNNING_SCHEDULE_DAYS[k - 2] days have passed since then; the last step is the
final notice. Nothing is queued after recovery, cancellation or a card update: those write a
canceled row under the invoice's reminder keys, which this job respects.
"""

from datetime import datetime, timedelta

import structlog
from sqlalchemy import exists, literal, select
from sqlalchemy.orm import Session, aliased

from billing.db import session_scope, utcnow
from billing.models import EmailOutbox, Payment, Pledge, PledgeStatus
from billing.notifications import reminder_is_due_for, reminder_key
from billing.outbox import SEND_EMAIL_TASK, queue_email
from billing.settings import get_settings
from billing.task_queue import enqueue_after_commit
from workers.celery_app import app

log = structlog.get_logger()
BATCH = 500


def due_step(first_reminded_at: datetime, now: datetime, schedule_days: list[int]) -> int | None:
    """The latest step due (2 = second reminder); a worker that was down skips to it."""
    elapsed = now - first_reminded_at
    due = [step for step, days in enumerate(schedule_days, start=2) if elapsed >= timedelta(days)]
    return due[-1] if due else None


@app.task(name="workers.dunning.send_due_reminders")  # type: ignore[untyped-decorator]
def send_due_reminders() -> int:
    """Queue every reminder that has come due; how many. Safe to run at any moment, any times."""
    with session_scope() as session:
        return queue_due_reminders(session, utcnow())


def queue_due_reminders(session: Session, now: datetime) -> int:
    schedule = get_settings().dunning_schedule_days
    final_step = len(schedule) + 1
    first = aliased(EmailOutbox)
    later = aliased(EmailOutbox)
    final_key = literal("reminder:") + Payment.stripe_invoice_id + literal(f":{final_step}")
    open_dunning = (
        select(first, Payment, Pledge)
        .join(Payment, Payment.id == first.payment_id)
        .join(Pledge, Pledge.id == first.pledge_id)
        .where(
            first.dedupe_key.startswith("reminder:", autoescape=True),
            first.dedupe_key.endswith(":1", autoescape=True),
            first.status.in_(("sending", "sent")),
            Payment.status == "failed",
            Pledge.status.not_in((PledgeStatus.CANCELED, PledgeStatus.FAILED)),
            # A canceled step (recovery, card update, cancellation) or the final notice: done.
            ~exists().where(
                later.payment_id == first.payment_id,
                later.dedupe_key.startswith("reminder:", autoescape=True),
                (later.status == "canceled") | (later.dedupe_key == final_key),
            ),
        )
        .order_by(first.id)
        .execution_options(yield_per=BATCH)
    )
    queued = 0
    for row, payment, pledge in session.execute(open_dunning):
        invoice_id = payment.stripe_invoice_id
        step = due_step(row.sent_at or row.created_at, now, schedule)
        if invoice_id is None or step is None or not reminder_is_due_for(payment, pledge):
            continue
        if _latest_step(session, invoice_id) >= step:
            continue
        key = reminder_key(invoice_id, step)
        template = "final_notice" if step == final_step else "payment_reminder"
        if queue_email(
            session, dedupe_key=key, template=template, to_email=row.to_email,
            locale=row.locale, context=row.context, pledge_id=pledge.id, payment_id=payment.id,
        ):  # fmt: skip
            enqueue_after_commit(session, SEND_EMAIL_TASK, key)
            queued += 1
    if queued:
        log.info("dunning_reminders_queued", count=queued)
    return queued


def _latest_step(session: Session, invoice_id: str) -> int:
    keys = session.scalars(
        select(EmailOutbox.dedupe_key).where(
            EmailOutbox.dedupe_key.startswith(f"reminder:{invoice_id}:", autoescape=True)
        )
    ).all()
    steps = (key.rsplit(":", 1)[1] for key in keys)
    return max((int(step) for step in steps if step.isdigit()), default=0)
