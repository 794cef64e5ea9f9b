"""From a gift to monthly: a signed link in the receipt and the thank-you, one confirming click,
a monthly pledge on the gift's saved card, exactly once, counted under source=upgrade."""

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import Pledge
from billing.reader_links import UPGRADE_SALT, manage_token, pledge_id_from_token, upgrade_token
from tests.conftest import BrowserStripe, CaughtMail
from tests.integration.test_manage import outbox
from tests.reports_ledger import api_key
from tests.stripe_events import deliver, event, fixture
from workers.emails import deliver as send_mail

VISA = "4242424242424242"
THREE_DS_ALWAYS = "4000002760003184"


def paid_gift(
    client: TestClient, browser: BrowserStripe, amount: int = 2000, card: str = VISA
) -> dict[str, Any]:
    """A one-time gift through the widget's API, 3-D Secure steps included; its confirm answer."""
    body = {"email": "giver@example.org", "amount": amount, "currency": "eur",
            "interval": "once", "campaign": "winter"}  # fmt: skip
    created = client.post("/v1/pledges", json=body).json()
    method = {"payment_method": browser.create_payment_method(card)}
    confirmed = client.post(f"/v1/pledges/{created['id']}/confirm", json=method).json()
    while confirmed["status"] == "requires_action":
        browser.handle_next_action(confirmed["client_secret"], success=True)
        confirmed = client.post(f"/v1/pledges/{created['id']}/confirm", json={}).json()
    assert confirmed["status"] == "active"
    return dict(confirmed)


def monthly_pledges(db: Session) -> list[Pledge]:
    db.expire_all()
    return list(db.scalars(select(Pledge).where(Pledge.source == "upgrade")))


def token_of(gift: dict[str, Any]) -> str:
    return str(gift["upgrade_url"]).rsplit("/monthly/", 1)[1]


def test_gift_confirm_and_receipt_carry_a_signed_make_it_monthly_link(
    client: TestClient, browser_stripe: BrowserStripe, db: Session, smtp_server: CaughtMail
) -> None:
    gift = paid_gift(client, browser_stripe)
    assert pledge_id_from_token(token_of(gift), salt=UPGRADE_SALT) == uuid.UUID(gift["id"])
    # A manage token is not an upgrade token, and the other way round.
    assert pledge_id_from_token(token_of(gift)) is None
    assert client.get(f"/monthly/{manage_token(gift['id'])}").status_code == 404

    pledge = db.get(Pledge, uuid.UUID(gift["id"]))
    assert pledge is not None and pledge.stripe_payment_intent_id is not None
    intent = fixture(
        "payment_intent", id=pledge.stripe_payment_intent_id, amount=2000, amount_received=2000,
        currency="eur", status="succeeded", customer=pledge.stripe_customer_id,
        metadata={"pledge_id": gift["id"]}, latest_charge=None,
    )  # fmt: skip
    deliver(client, db, event("payment_intent.succeeded", intent))
    [receipt] = outbox(db, "gift_receipt")
    assert send_mail(receipt.dedupe_key).outcome == "sent"

    [message] = smtp_server.messages
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "give a little every month instead" in text
    link = re.search(r"http\S+/monthly/(\S+)", text)
    assert link is not None
    assert pledge_id_from_token(link.group(1), salt=UPGRADE_SALT) == pledge.id
    assert "Make it monthly" in html


def test_link_shows_the_amount_then_one_click_starts_one_monthly_pledge_on_the_gift_card(
    client: TestClient, browser_stripe: BrowserStripe, db: Session, stripe_api: httpx.Client
) -> None:
    gift = paid_gift(client, browser_stripe, amount=2000)
    token = token_of(gift)

    shown = client.get(f"/monthly/{token}")
    assert shown.status_code == 200 and 'value="5"' in shown.text  # 20.00 / 4
    assert monthly_pledges(db) == []  # GET only shows

    started = client.post(f"/monthly/{token}", data={"amount": "6"}, follow_redirects=False)
    again = client.post(f"/monthly/{token}", data={"amount": "9"})

    assert started.status_code == 303
    assert again.status_code == 200 and "You now give €6.00 a month" in again.text
    [monthly] = monthly_pledges(db)
    gift_row = db.get(Pledge, uuid.UUID(gift["id"]))
    assert gift_row is not None
    assert (monthly.status, monthly.interval, monthly.amount_minor) == ("active", "month", 600)
    assert monthly.upgraded_from_pledge_id == gift_row.id
    assert (monthly.reader_id, monthly.campaign) == (gift_row.reader_id, "winter")
    subscription = stripe_api.get(f"/v1/subscriptions/{monthly.stripe_subscription_id}").json()
    assert subscription["status"] == "active"
    assert subscription["default_payment_method"] == gift_row.stripe_payment_method_id
    assert subscription["items"]["data"][0]["plan"]["id"] == "pledge-eur-600-month"
    listed = stripe_api.get("/v1/subscriptions", params={"customer": monthly.stripe_customer_id})
    assert len(listed.json()["data"]) == 1


def test_a_double_click_makes_one_pledge(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    token = token_of(paid_gift(client, browser_stripe))

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(
            pool.map(lambda _: client.post(f"/monthly/{token}", data={"amount": "5"}), range(3))
        )

    assert {answer.status_code for answer in answers} == {200}
    assert len(monthly_pledges(db)) == 1


@pytest.mark.parametrize(
    ("gift_minor", "suggested"), [(500, 'value="2"'), (1000, 'value="3"'), (5000, 'value="13"')]
)
def test_suggested_amount_is_a_quarter_rounded_to_a_whole_unit_never_below_the_minimum(
    client: TestClient, browser_stripe: BrowserStripe, gift_minor: int, suggested: str
) -> None:
    token = token_of(paid_gift(client, browser_stripe, amount=gift_minor))

    assert suggested in client.get(f"/monthly/{token}").text


def test_bad_amount_is_refused_with_a_reason_and_starts_nothing(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    token = token_of(paid_gift(client, browser_stripe))

    too_small = client.post(f"/monthly/{token}", data={"amount": "1.50"})
    not_a_number = client.post(f"/monthly/{token}", data={"amount": "five"})
    tampered = client.post(f"/monthly/{token[:-3]}xyz", data={"amount": "5"})

    assert too_small.status_code == 422 and "The smallest pledge is €2.00." in too_small.text
    assert not_a_number.status_code == 422 and "Enter an amount such as 5" in not_a_number.text
    assert tampered.status_code == 404
    assert monthly_pledges(db) == []


def test_bank_asking_for_3d_secure_gets_the_widgets_next_action_step(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    token = token_of(paid_gift(client, browser_stripe, card=THREE_DS_ALWAYS))

    asked = client.post(f"/monthly/{token}", data={"amount": "5"})

    assert asked.status_code == 200 and "handleNextAction" in asked.text
    [pending] = monthly_pledges(db)
    assert pending.status == "pending"
    secret = re.search(r'clientSecret: "([^"]+)"', asked.text)
    assert secret is not None and secret.group(1).startswith("pi_")
    browser_stripe.handle_next_action(secret.group(1), success=True)
    finished = client.post(f"/monthly/{token}/confirm", json={})

    assert finished.json() == {"status": "active"}
    [active] = monthly_pledges(db)
    assert active.id == pending.id and active.status == "active"


def test_attribution_counts_the_monthly_pledges_under_source_upgrade(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    token = token_of(paid_gift(client, browser_stripe))
    client.post(f"/monthly/{token}", data={"amount": "5"})

    today = utcnow().date().isoformat()
    report = client.get(
        "/v1/reports/attribution", params={"from": today, "to": today},
        headers={"Authorization": f"Bearer {api_key(db, 'finance')}"},
    ).json()  # fmt: skip

    [upgrade] = [r for r in report["rows"] if (r["dimension"], r["value"]) == ("source", "upgrade")]
    assert (upgrade["pledges"], upgrade["recurring_pledges"], upgrade["mrr"]) == (1, 1, 500)
    assert db.scalar(select(func.count()).select_from(Pledge)) == 2
    assert upgrade_token(uuid.uuid4()) != token
