"""The card-expiry warning: one mail in the month a card paying an active pledge runs out.

A card is valid to the end of its expiry month, so "a month before it expires" is the first day
of that month. The key names the pledge, the card and its expiry, so each card warns once; a new
card from the manage page, or a new expiry from Stripe's card updater
(`payment_method.automatically_updated`), moves the pledge out of the month and no mail goes.
"""

from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import session_scope, utcnow
from billing.models import EmailOutbox, Pledge, PledgeStatus, Reader
from billing.outbox import SEND_EMAIL_TASK, queue_email
from billing.task_queue import enqueue_after_commit
from workers.celery_app import app

log = structlog.get_logger()
TEMPLATE = "card_expiring"


@app.task(name="workers.card_expiry.warn_expiring_cards")  # type: ignore[untyped-decorator]
def warn_expiring_cards() -> int:
    with session_scope() as session:
        return queue_expiry_warnings(session, utcnow())


def _expiry(pledge: Pledge) -> str:
    return f"{pledge.card_exp_year}-{pledge.card_exp_month:02d}"


def queue_expiry_warnings(session: Session, now: datetime) -> int:
    expiring = session.execute(
        select(Pledge, Reader)
        .join(Reader, Reader.id == Pledge.reader_id)
        .where(
            Pledge.status == PledgeStatus.ACTIVE,
            Pledge.interval != "once",
            Pledge.stripe_payment_method_id.is_not(None),
            Pledge.card_exp_year * 12 + Pledge.card_exp_month == now.year * 12 + now.month,
            Reader.erased_at.is_(None),
        )
    ).all()
    queued = 0
    for pledge, reader in expiring:
        expiry = _expiry(pledge)
        key = f"card_expiring:{pledge.id}:{pledge.stripe_payment_method_id}:{expiry}"
        context = {"payment_method": pledge.stripe_payment_method_id, "expires": expiry}
        if queue_email(
            session, dedupe_key=key, template=TEMPLATE, to_email=reader.email,
            locale=pledge.locale, context=context, pledge_id=pledge.id,
        ):  # fmt: skip
            enqueue_after_commit(session, SEND_EMAIL_TASK, key)
            queued += 1
    if queued:
        log.info("card_expiry_warnings_queued", count=queued)
    return queued


def still_wanted(row: EmailOutbox, pledge: Pledge | None) -> bool:
    """At send time: the same card, with the same expiry, still pays an active pledge."""
    return (
        pledge is not None
        and pledge.status == PledgeStatus.ACTIVE
        and pledge.stripe_payment_method_id == row.context.get("payment_method")
        and pledge.card_exp_month is not None
        and _expiry(pledge) == row.context.get("expires")
    )
