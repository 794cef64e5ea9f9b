"""A reader pledging from the widget in headless Chromium, against `pledges serve` + localstripe."""


import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Pledge

pytestmark = pytest.mark.browser

VISA = "4242424242424242"
DECLINED_ON_SETUP = "4000000000000002"
THREE_DS_ALWAYS = "4000002760003184"


def fill_card(page: Page, number: str) -> None:
    card = page.locator(".rp-card")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("10115")


def open_widget(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator(".rp-widget[data-ready=true]")).to_be_visible()


def pledges(db: Session) -> list[Pledge]:
    db.expire_all()
    return list(db.scalars(select(Pledge)))


def test_reader_pledges_monthly_with_a_card_and_sees_the_thank_you(
    page: Page, live_server: str, db: Session
) -> None:
    open_widget(page, f"{live_server}/demo")

    page.get_by_label("Monthly").check()
    page.get_by_label("€10").check()
    page.get_by_label("Email").fill("ada@example.org")
    page.get_by_label("Name (optional)").fill("Ada Reader")
    expect(page.get_by_role("button", name="Pledge €10 a month")).to_be_visible()
    fill_card(page, VISA)
    page.get_by_role("button", name="Pledge €10 a month").click()

    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    expect(page.locator(".rp-thanks")).to_contain_text("€10 a month")
    [pledge] = pledges(db)
    assert (pledge.status, pledge.amount_minor, pledge.currency, pledge.interval) == (
        "active", 1000, "eur", "month",
    )  # fmt: skip
    assert pledge.campaign == "demo" and pledge.article_url == f"{live_server}/demo"
