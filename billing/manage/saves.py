"""The save page a reader sees before cancelling: lower, skip, pause, change card or cancel.

Each choice is recorded in `pledge_history` as a row of its own with `save_action` set (the
trigger records the status or amount change it causes separately), so the movement report can
count cancellations started and how many of them the reader turned into something else.
"""

import calendar
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.endpoints import events as outgoing
from billing.i18n import Amount, Message
from billing.manage import service
from billing.models import Pledge, PledgeHistory, Reader
from billing.money import to_minor
from billing.settings import Settings
from billing.stripe_gateway import StripeGateway

CANCEL_STARTED = "cancel_started"
# What a reader may choose instead of cancelling; each one counts as a save.
SAVE_CHOICES = ("lowered", "skipped", "paused", "card")
PAUSE_MONTHS = (1, 2, 3)


def months_later(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months on (the month's last day if it is shorter)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, _days_in(year, month)))


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def skip_dates(pledge: Pledge, now: datetime) -> tuple[datetime, datetime]:
    """(the payment that is skipped, when collection resumes): a day after the skipped one, so
    Stripe voids exactly that invoice and bills the one after as usual."""
    skipped = pledge.current_period_end if pledge.current_period_end else None
    if skipped is None or skipped <= now:
        skipped = months_later(now, 1 if pledge.interval == "month" else 12)
    return skipped, skipped + timedelta(days=1)


def pause_until(now: datetime, months: int) -> datetime:
    return months_later(now, months)


def minimum_minor(settings: Settings, pledge: Pledge) -> int:
    return to_minor(settings.min_amount, pledge.currency)


def _last_action(session: Session, pledge: Pledge) -> str | None:
    return session.scalar(
        select(PledgeHistory.save_action)
        .where(PledgeHistory.pledge_id == pledge.id, PledgeHistory.save_action.is_not(None))
        .order_by(PledgeHistory.changed_at.desc(), PledgeHistory.id.desc())
        .limit(1)
    )


def _record(session: Session, pledge: Pledge, action: str) -> None:
    """A neutral history row: same status before and after, no MRR change, no movement."""
    mrr = session.scalar(
        select(func.pledge_mrr_minor(pledge.status, pledge.interval, pledge.charged_minor))
    )
    row = insert(PledgeHistory).values(
        pledge_id=pledge.id, reader_id=pledge.reader_id, changed_at=utcnow(),
        status=pledge.status, previous_status=pledge.status, interval=pledge.interval,
        currency=pledge.currency, mrr_minor=mrr or 0, mrr_delta_minor=0, movement=None,
        save_action=action,
    )  # fmt: skip
    session.execute(row)


def start_cancel(session: Session, *, pledge: Pledge) -> None:
    """The reader pressed Cancel: one start per visit, however often the page is reloaded."""
    service.require_running(pledge)
    if _last_action(session, pledge) != CANCEL_STARTED:
        _record(session, pledge, CANCEL_STARTED)
        outgoing.pledge_cancellation_started(session, pledge=pledge)


def lower(
    session: Session,
    gateway: StripeGateway,
    settings: Settings,
    *,
    pledge: Pledge,
    reader: Reader,
    amount_minor: int,
) -> None:
    minimum = minimum_minor(settings, pledge)
    if not minimum <= amount_minor < pledge.amount_minor:
        low, high = (
            Amount(minimum, pledge.currency),
            Amount(pledge.amount_minor - 1, pledge.currency),
        )
        raise service.ManageError(
            Message("Enter an amount from %(low)s up to %(high)s.", low=low, high=high), 422
        )
    service.change_amount(
        session, gateway, settings, pledge=pledge, reader=reader, amount_minor=amount_minor,
        interval=pledge.interval,
    )  # fmt: skip
    _record(session, pledge, "lowered")


def skip(session: Session, gateway: StripeGateway, *, pledge: Pledge, reader: Reader) -> None:
    _skipped, resumes_at = skip_dates(pledge, utcnow())
    service.pause(session, gateway, pledge=pledge, reader=reader, resumes_at=resumes_at)
    _record(session, pledge, "skipped")


def pause(
    session: Session, gateway: StripeGateway, *, pledge: Pledge, reader: Reader, months: int
) -> None:
    if months not in PAUSE_MONTHS:
        raise service.ManageError(Message("Choose a pause of one, two or three months."), 422)
    resumes_at = pause_until(utcnow(), months)
    service.pause(session, gateway, pledge=pledge, reader=reader, resumes_at=resumes_at)
    _record(session, pledge, "paused")


def change_card(session: Session, *, pledge: Pledge) -> None:
    """The reader keeps the pledge and goes to the card form; counted once per start."""
    service.require_running(pledge)
    if _last_action(session, pledge) != "card":
        _record(session, pledge, "card")
