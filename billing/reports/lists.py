"""The pledge and payment lists: filters checked, pages cut by cursor, items shaped per role."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from billing.db import get_sessionmaker
from billing.models import Payment, Pledge
from billing.reports import queries
from billing.reports.auth import Principal
from billing.reports.params import (
    INTERVALS,
    PAYMENT_STATUSES,
    PLEDGE_STATUSES,
    ReportError,
    decode_cursor,
    encode_cursor,
    parse_choice,
    parse_currency,
    parse_period,
)
from billing.reports.schemas import (
    PaymentItem,
    PaymentItemWithReader,
    PaymentPage,
    PledgeItem,
    PledgeItemWithReader,
    PledgePage,
)


@dataclass(frozen=True)
class ListFilters:
    status: str | None
    currency: str | None
    interval: str | None
    campaign: str | None
    email: str | None
    from_value: str | None
    to_value: str | None
    timezone: str


def _common(
    filters: ListFilters, principal: Principal, statuses: tuple[str, ...]
) -> dict[str, Any]:
    if filters.email and not principal.sees_personal_data:
        raise ReportError("Filtering by email needs an admin key.", status_code=403)
    created_from = created_before = None
    if filters.from_value or filters.to_value:
        period = parse_period(
            filters.from_value or "1970-01-01", filters.to_value, None, filters.timezone, 1
        )
        created_from, created_before = period.start_at, period.end_at
    return {
        "status": parse_choice(filters.status, statuses, "status"),
        "currency": parse_currency(filters.currency),
        "interval": parse_choice(filters.interval, INTERVALS, "interval"),
        "campaign": filters.campaign or None,
        "email": filters.email or None,
        "created_from": created_from,
        "created_before": created_before,
    }


def pledge_item_model(principal: Principal) -> type[PledgeItem]:
    return PledgeItemWithReader if principal.sees_personal_data else PledgeItem


def payment_item_model(principal: Principal) -> type[PaymentItem]:
    return PaymentItemWithReader if principal.sees_personal_data else PaymentItem


def _pledge_item(
    model: type[PledgeItem], pledge: Pledge, email: str | None, name: str | None
) -> PledgeItem:
    values: dict[str, Any] = {
        "id": pledge.id, "status": pledge.status, "amount": pledge.amount_minor,
        "fee_cover": pledge.fee_cover_minor, "currency": pledge.currency,
        "interval": pledge.interval, "source": pledge.source, "campaign": pledge.campaign,
        "article_url": pledge.article_url, "created_at": pledge.created_at,
        "activated_at": pledge.activated_at, "canceled_at": pledge.canceled_at,
        "stripe_customer_id": pledge.stripe_customer_id,
        "stripe_subscription_id": pledge.stripe_subscription_id,
        "stripe_payment_intent_id": pledge.stripe_payment_intent_id,
        "reader_email": email, "reader_name": name,
    }  # fmt: skip
    return model.model_validate({key: values[key] for key in model.model_fields})


def _payment_item(model: type[PaymentItem], payment: Payment, email: str | None) -> PaymentItem:
    values: dict[str, Any] = {
        "id": payment.id, "pledge_id": payment.pledge_id, "status": payment.status,
        "amount": payment.amount_minor, "currency": payment.currency, "fee": payment.fee_minor,
        "net": payment.net_minor, "refunded": payment.refunded_minor,
        "disputed": payment.disputed_minor, "dispute_status": payment.dispute_status,
        "attempt_count": payment.attempt_count, "failure_code": payment.failure_code,
        "paid_at": payment.paid_at, "failed_at": payment.failed_at,
        "created_at": payment.created_at, "stripe_invoice_id": payment.stripe_invoice_id,
        "stripe_payment_intent_id": payment.stripe_payment_intent_id,
        "stripe_charge_id": payment.stripe_charge_id,
        "stripe_subscription_id": payment.stripe_subscription_id,
        "stripe_customer_id": payment.stripe_customer_id, "reader_email": email,
    }  # fmt: skip
    return model.model_validate({key: values[key] for key in model.model_fields})


def _pledge_after(cursor: str | None) -> Any:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    try:
        return decoded[0], uuid.UUID(decoded[1])
    except ValueError:
        raise ReportError("cursor is not one this API gave out.", field="cursor") from None


def _payment_after(cursor: str | None) -> Any:
    decoded = decode_cursor(cursor)
    if decoded is None:
        return None
    if not decoded[1].isdigit():
        raise ReportError("cursor is not one this API gave out.", field="cursor")
    return decoded[0], int(decoded[1])


def pledge_statement(
    filters: ListFilters, principal: Principal, cursor: str | None
) -> queries.PledgeRows:
    common = _common(filters, principal, PLEDGE_STATUSES)
    return queries.pledge_list(**common, after=_pledge_after(cursor))


def payment_statement(
    filters: ListFilters, principal: Principal, cursor: str | None
) -> queries.PaymentRows:
    common = _common(filters, principal, PAYMENT_STATUSES)
    return queries.payment_list(**common, after=_payment_after(cursor))


def pledge_page(
    session: Session, statement: queries.PledgeRows, principal: Principal, limit: int
) -> PledgePage:
    model = pledge_item_model(principal)
    rows = session.execute(statement.limit(limit + 1)).all()
    items = [_pledge_item(model, pledge, email, name) for pledge, email, name in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return PledgePage(
        items=items,
        next_cursor=encode_cursor(last.created_at, last.id) if last else None,
    )


def payment_page(
    session: Session, statement: queries.PaymentRows, principal: Principal, limit: int
) -> PaymentPage:
    model = payment_item_model(principal)
    rows = session.execute(statement.limit(limit + 1)).all()
    items = [_payment_item(model, payment, email) for payment, email in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return PaymentPage(
        items=items,
        next_cursor=encode_cursor(last.created_at, last.id) if last else None,
    )


def all_pledge_items(statement: queries.PledgeRows, principal: Principal) -> Iterator[PledgeItem]:
    """Every matching pledge for a CSV download, on a session of its own held while streaming."""
    model = pledge_item_model(principal)
    with get_sessionmaker()() as session:
        for pledge, email, name in queries.stream(session, statement):
            yield _pledge_item(model, pledge, email, name)


def all_payment_items(
    statement: queries.PaymentRows, principal: Principal
) -> Iterator[PaymentItem]:
    model = payment_item_model(principal)
    with get_sessionmaker()() as session:
        for payment, email in queries.stream(session, statement):
            yield _payment_item(model, payment, email)
