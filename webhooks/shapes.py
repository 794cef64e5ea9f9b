"""Reading fields from Stripe objects in the current API shape and in localstripe's 2017 shape."""

from datetime import UTC, datetime
from typing import Any

from webhooks.errors import EventRejected


def timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def object_id(value: Any) -> str | None:
    """An id whether Stripe sent the bare id or the expanded object."""
    if isinstance(value, dict):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return object_id(details.get("subscription")) or object_id(invoice.get("subscription"))


def invoice_payment_ids(invoice: dict[str, Any]) -> tuple[str | None, str | None]:
    """(payment intent, charge): from `payments` when present, else the 2017 fields."""
    for invoice_payment in (invoice.get("payments") or {}).get("data") or []:
        payment = invoice_payment.get("payment") or {}
        intent, charge = object_id(payment.get("payment_intent")), object_id(payment.get("charge"))
        if intent or charge:
            return intent, charge
    return object_id(invoice.get("payment_intent")), object_id(invoice.get("charge"))


def invoice_period(invoice: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The service period of the subscription line, which the invoice's own fields lag behind."""
    for line in (invoice.get("lines") or {}).get("data") or []:
        period = line.get("period") or {}
        if period.get("start"):
            return timestamp(period["start"]), timestamp(period.get("end"))
    return timestamp(invoice.get("period_start")), timestamp(invoice.get("period_end"))


def subscription_terms(subscription: dict[str, Any]) -> tuple[int, str, str, str | None]:
    """(amount in minor units, currency, interval, plan or price id) of a one-item subscription."""
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        raise EventRejected(f"subscription {subscription.get('id')} has no items")
    item = items[0]
    price, plan = item.get("price") or {}, item.get("plan") or {}
    if price.get("unit_amount") is not None:
        unit, currency = int(price["unit_amount"]), str(price.get("currency"))
        interval, source_id = (price.get("recurring") or {}).get("interval"), price.get("id")
    elif plan.get("amount") is not None:
        unit, currency = int(plan["amount"]), str(plan.get("currency"))
        interval, source_id = plan.get("interval"), plan.get("id")
    else:
        raise EventRejected(f"subscription {subscription.get('id')} has no fixed amount")
    if interval not in ("month", "year"):
        raise EventRejected(f"subscription {subscription.get('id')} bills every {interval}")
    amount = unit * int(item.get("quantity") or 1)
    if amount <= 0:
        raise EventRejected(f"subscription {subscription.get('id')} is free")
    return amount, currency.lower(), str(interval), source_id


def subscription_period_end(subscription: dict[str, Any]) -> datetime | None:
    """Current Stripe keeps the period on the item; the 2017 shape on the subscription."""
    for item in (subscription.get("items") or {}).get("data") or []:
        if item.get("current_period_end"):
            return timestamp(item["current_period_end"])
    return timestamp(subscription.get("current_period_end"))
