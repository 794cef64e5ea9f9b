"""A reader manages a pledge from the link in an email, in headless Chromium."""

import os
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Pledge, PledgeHistory
from billing.reader_links import manage_token
from tests.conftest import BrowserStripe

pytestmark = pytest.mark.browser
# The save page as a reader sees it on a phone (Chromium); the copy in docs/ is refreshed with
# `UPDATE_SCREENSHOTS=1 make test`, so an ordinary run leaves the checkout as it was.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "save-page.png"


def active_pledge(live_server: str, browser_stripe: BrowserStripe) -> uuid.UUID:
    body = {"email": "manage@example.org", "amount": 500, "currency": "eur"}
    created = httpx.post(f"{live_server}/v1/pledges", json=body).json()
    card = {"payment_method": browser_stripe.create_payment_method("4242424242424242")}
    confirmed = httpx.post(f"{live_server}/v1/pledges/{created['id']}/confirm", json=card).json()
    assert confirmed["status"] == "active"
    return uuid.UUID(created["id"])


def test_reader_changes_the_amount_updates_the_card_and_cancels(
    page: Page,
    live_server: str,
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
) -> None:
    pledge_id = active_pledge(live_server, browser_stripe)
    page.goto(f"{live_server}/manage/{manage_token(pledge_id)}")
    expect(page.locator("#amount")).to_have_text("€5.00 a month")

    page.get_by_label("Amount (EUR)").fill("8")
    page.get_by_label("How often").select_option("year")
    page.get_by_role("button", name="Change my pledge").click()

    expect(page.get_by_role("status")).to_have_text(
        "Your pledge was changed. A confirmation is on its way."
    )
    expect(page.locator("#amount")).to_have_text("€8.00 a year")

    card = page.locator("#card-element")
    card.locator("input[placeholder=number]").fill("5555555555554444")
    card.locator("input[placeholder=exp_month]").fill("11")
    card.locator("input[placeholder=exp_year]").fill("33")
    card.locator("input[placeholder=cvc]").fill("321")
    page.get_by_role("button", name="Use this card").click()
    expect(page.locator("#card-status")).to_have_text(
        "Your new card will be used from the next payment."
    )

    page.get_by_role("button", name="Cancel my pledge").click()
    expect(page.get_by_role("heading", name="Before you go")).to_be_visible()
    page.get_by_label("Why are you leaving? (optional)").fill("Too many subscriptions")
    page.get_by_role("button", name="Cancel my pledge").click()

    expect(page.get_by_role("status")).to_have_text(
        "Your pledge was cancelled. A confirmation is on its way."
    )
    # In words; the ledger and the API spell it "canceled".
    expect(page.locator("#status")).to_have_text("cancelled")
    db.expire_all()
    pledge = db.get(Pledge, pledge_id)
    assert pledge is not None
    assert (pledge.status, pledge.amount_minor, pledge.interval) == ("canceled", 800, "year")
    assert pledge.cancel_reason == "Too many subscriptions"
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["status"] == "canceled"
    assert subscription["items"]["data"][0]["plan"]["id"] == "pledge-eur-800-year"
    paying_card = subscription["default_payment_method"]
    assert stripe_api.get(f"/v1/payment_methods/{paying_card}").json()["card"]["last4"] == "4444"


def test_reader_starts_to_cancel_and_skips_a_month_instead(
    page: Page,
    live_server: str,
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
    tmp_path: Path,
) -> None:
    pledge_id = active_pledge(live_server, browser_stripe)
    page.goto(f"{live_server}/manage/{manage_token(pledge_id)}")

    page.get_by_role("button", name="Cancel my pledge").click()

    expect(page.get_by_role("heading", name="Before you go")).to_be_visible()
    for choice in ("Lower my pledge", "Skip the next payment", "Pause my pledge",
                   "Change my card", "Cancel my pledge"):  # fmt: skip
        expect(page.get_by_role("button", name=choice)).to_be_visible()
    screenshot = DOCS_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path / "save.png"
    page.screenshot(path=str(screenshot), full_page=True)
    page.get_by_role("button", name="Skip the next payment").click()

    expect(page.get_by_role("status")).to_contain_text("Your next payment is skipped")
    expect(page.locator("#status")).to_have_text("paused")
    db.expire_all()
    pledge = db.get(Pledge, pledge_id)
    assert pledge is not None and pledge.status == "paused" and pledge.resumes_at is not None
    expect(page.locator("#resumes")).to_have_text(
        f"{pledge.resumes_at:%B} {pledge.resumes_at.day}, {pledge.resumes_at:%Y}"
    )
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["status"] == "active"  # Stripe keeps it; only collection pauses
    assert subscription["pause_collection"] == {
        "behavior": "void", "resumes_at": int(pledge.resumes_at.timestamp()),
    }  # fmt: skip
    actions = db.scalars(
        select(PledgeHistory.save_action)
        .where(PledgeHistory.pledge_id == pledge_id, PledgeHistory.save_action.is_not(None))
        .order_by(PledgeHistory.id)
    ).all()
    assert list(actions) == ["cancel_started", "skipped"]
