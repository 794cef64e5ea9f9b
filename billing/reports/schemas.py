"""The shapes of report rows and list items; a CSV's columns are a row model's fields, in order."""

import uuid
from datetime import date, datetime

from pydantic import BaseModel

# Amounts are integer minor units in the row's currency; rows never mix currencies.


class ReportPeriod(BaseModel):
    from_date: date
    to_date: date
    timezone: str
    currency: str | None


class SummaryCurrencyRow(BaseModel):
    currency: str
    active_pledges: int
    past_due_pledges: int
    contributing_pledges: int
    mrr: int
    average_pledge: int | None
    amount_at_risk: int


class Summary(ReportPeriod):
    as_of: datetime
    active_pledges: int
    past_due_pledges: int
    mrr: dict[str, int]
    average_pledge: dict[str, int]
    amount_at_risk: dict[str, int]
    new_pledges: int
    new_one_time_gifts: int
    cancelled_pledges: int
    contributing_pledges_at_start: int
    churn_rate: str | None
    by_currency: list[SummaryCurrencyRow]


class RevenueRow(BaseModel):
    period: date
    currency: str
    payments: int
    gross: int
    refunded: int
    disputed: int
    fees: int
    fees_unknown_payments: int
    net: int


class Revenue(ReportPeriod):
    granularity: str
    rows: list[RevenueRow]


class MovementRow(BaseModel):
    period: date
    currency: str
    mrr_start: int
    new: int
    expansion: int
    contraction: int
    churned: int
    reactivated: int
    net_change: int
    mrr_end: int
    new_count: int
    churned_count: int
    reactivated_count: int
    # Readers who pressed Cancel on the manage page, and those of them who chose to lower,
    # skip, pause or change the card instead; save_rate = saved / cancellations_started.
    cancellations_started: int
    saved: int
    save_rate: str | None


class Movement(ReportPeriod):
    rows: list[MovementRow]


class RecoveryRow(BaseModel):
    period: date | None
    currency: str
    failed: int
    failed_amount: int
    recovered: int
    recovered_amount: int
    recovered_after_reminder_1: int
    recovered_after_reminder_2: int
    recovered_after_reminder_3_or_more: int
    lost: int
    lost_amount: int
    still_retrying: int
    recovery_rate: str | None


class Recovery(ReportPeriod):
    rows: list[RecoveryRow]
    totals: list[RecoveryRow]


class AttributionRow(BaseModel):
    dimension: str
    value: str | None
    currency: str
    pledges: int
    recurring_pledges: int
    contributing_pledges: int
    mrr: int
    one_time_amount: int


class Attribution(ReportPeriod):
    top: int
    rows: list[AttributionRow]


class PledgeItem(BaseModel):
    id: uuid.UUID
    status: str
    amount: int
    fee_cover: int
    currency: str
    interval: str
    source: str | None
    campaign: str | None
    article_url: str | None
    created_at: datetime
    activated_at: datetime | None
    canceled_at: datetime | None
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    stripe_payment_intent_id: str | None


class PledgeItemWithReader(PledgeItem):
    reader_email: str | None
    reader_name: str | None


class PaymentItem(BaseModel):
    id: int
    pledge_id: uuid.UUID | None
    status: str
    amount: int
    currency: str
    fee: int | None
    net: int | None
    refunded: int
    disputed: int
    dispute_status: str | None
    attempt_count: int
    failure_code: str | None
    paid_at: datetime | None
    failed_at: datetime | None
    created_at: datetime
    stripe_invoice_id: str | None
    stripe_payment_intent_id: str | None
    stripe_charge_id: str | None
    stripe_subscription_id: str | None
    stripe_customer_id: str | None


class PaymentItemWithReader(PaymentItem):
    reader_email: str | None


class PledgePage(BaseModel):
    items: list[PledgeItemWithReader] | list[PledgeItem]
    next_cursor: str | None


class PaymentPage(BaseModel):
    items: list[PaymentItemWithReader] | list[PaymentItem]
    next_cursor: str | None
