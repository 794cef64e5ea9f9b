"""What the widget sends and receives when a reader pledges."""

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool, StrictInt

Interval = Literal["month", "year", "once"]


class PledgeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr = Field(description="Where receipts and the manage link go.")
    name: str | None = Field(default=None, max_length=200)
    amount: StrictInt = Field(
        description="Whole number of minor units: 500 is 5.00. Limits depend on the currency.",
        examples=[500],
    )
    currency: str = Field(min_length=3, max_length=3, examples=["eur"])
    interval: Interval = "month"
    cover_fees: StrictBool = Field(
        default=False, description="Add the card fee so the newsroom receives the full amount."
    )
    source: str | None = Field(default=None, max_length=100, description="e.g. 'newsletter'.")
    campaign: str | None = Field(default=None, max_length=100)
    article_url: str | None = Field(default=None, max_length=2048)
    locale: str = Field(
        default="en",
        max_length=35,
        pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$",
        description="The reader's language (`de`, `ru-RU`): mails, pages and messages use the "
        "closest of LANGUAGES, English when none is close.",
    )


class PledgeCreated(BaseModel):
    """No intent secret: the card goes to `/confirm`, so every attempt passes through us."""

    id: uuid.UUID
    status: str
    publishable_key: str
    amount: int = Field(description="What the reader chose, in minor units.")
    fee_cover: int = Field(description="Added to cover the card fee, in minor units.")
    total_amount: int = Field(description="What the card is charged each time, in minor units.")
    currency: str
    interval: Interval


class CardSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_method: str | None = Field(
        default=None,
        pattern=r"^pm_[A-Za-z0-9_]{1,250}$",
        description="The PaymentMethod Stripe.js made from the card; omit it to finish the "
        "3-D Secure step of the card sent before.",
        examples=["pm_1Q0PsIJvEtkwdCNYMSaVuRz6"],
    )


class PledgeConfirmed(BaseModel):
    id: uuid.UUID
    status: Literal[
        "active", "requires_action", "failed", "pending", "past_due", "paused", "canceled"
    ]
    client_secret: str | None = Field(
        default=None, description="Only with `requires_action`: for Stripe.js's 3-D Secure step."
    )
    reason: str | None = None
    cards_left: int | None = Field(
        default=None, description="With `failed`: how many more cards this pledge may try."
    )
    upgrade_url: str | None = Field(
        default=None,
        description="With a paid one-time gift: the signed page that makes it a monthly pledge.",
    )
