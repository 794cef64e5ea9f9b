"""What the widget reads before it draws the form."""

from typing import Literal

from pydantic import BaseModel


class CurrencyLimits(BaseModel):
    code: str
    exponent: int
    min_amount: int
    max_amount: int


class FeeRule(BaseModel):
    basis_points: int
    fixed_minor: int


class Captcha(BaseModel):
    provider: Literal["turnstile", "hcaptcha"]
    site_key: str


class WidgetConfig(BaseModel):
    publishable_key: str
    stripe_js_url: str
    currencies: list[CurrencyLimits]
    fee: FeeRule
    captcha: Captcha | None
