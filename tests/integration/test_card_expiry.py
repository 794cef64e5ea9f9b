"""A month before the paying card runs out, one mail; none once the card was replaced or updated
by Stripe's card updater. Failed-payment mails say why, from the decline code, in en, ru and de."""

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from billing.models import Pledge
from billing.reader_links import manage_token
from tests.conftest import BrowserStripe, CaughtMail
from tests.integration.test_manage import VISA, active_pledge, fresh, outbox
from tests.stripe_events import event, invoice, make_pledge, new_id, post_event, stored_event
from webhooks.processing import process
from workers.card_expiry import queue_expiry_warnings
from workers.emails import deliver as send_mail

# Stripe's own PaymentMethod fixture (stripe/openapi fixtures3.json, 2026-07-29.dahlia).
PAYMENT_METHOD = json.loads((Path(__file__).parents[1] / "stripe_payment_method.json").read_text())
# BrowserStripe's cards expire in December 2034.
EXPIRY_MONTH = datetime(2034, 12, 2, 9, tzinfo=UTC)


def card_event(kind: str, payment_method_id: str, month: int, year: int) -> dict[str, Any]:
    payment_method = copy.deepcopy(PAYMENT_METHOD)
    payment_method.update(id=payment_method_id)
    payment_method["card"].update(exp_month=month, exp_year=year)
    return event(kind, payment_method)


def deliver_event(client: TestClient, db: Session, document: dict[str, Any]) -> None:
    assert post_event(client, document).status_code == 200
    process(stored_event(db, document["id"]).id)


def card_with_expiry(test_environment: dict[str, str], month: int, year: int) -> str:
    """`stripe.createPaymentMethod` for a card with the given expiry."""
    card = {"number": "5555555555554444", "exp_month": month, "exp_year": year, "cvc": "123"}
    response = httpx.post(
        f"{test_environment['STRIPE_API_BASE']}/js.stripe.com/v3/payment_methods",
        json={"key": test_environment["STRIPE_PUBLISHABLE_KEY"], "type": "card", "card": card},
    )
    return str(response.json()["id"])


@pytest.fixture
def pledge(client: TestClient, browser_stripe: BrowserStripe) -> Pledge:
    return active_pledge(client, browser_stripe)


def test_the_paying_cards_expiry_is_kept_and_warned_about_once_in_its_last_month(
    client: TestClient, pledge: Pledge, db: Session, smtp_server: CaughtMail
) -> None:
    assert (pledge.card_exp_month, pledge.card_exp_year) == (12, 2034)
    assert pledge.stripe_payment_method_id is not None

    with time_machine.travel(datetime(2034, 11, 30, 23, tzinfo=UTC), tick=False):
        assert queue_expiry_warnings(db, datetime.now(UTC)) == 0
    with time_machine.travel(EXPIRY_MONTH, tick=False):
        assert queue_expiry_warnings(db, datetime.now(UTC)) == 1
        db.commit()
        assert queue_expiry_warnings(db, datetime.now(UTC)) == 0
        db.commit()
        [warning] = outbox(db, "card_expiring")
        assert send_mail(warning.dedupe_key).outcome == "sent"

    [message] = smtp_server.messages
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert str(message["Subject"]).endswith("expires soon")
    assert "expires at the end of 12/2034" in text
    assert f"/manage/{manage_token(pledge.id)[:20]}" in text


def test_stripes_card_updater_suppresses_the_warning_and_an_old_event_changes_nothing(
    client: TestClient, pledge: Pledge, db: Session
) -> None:
    payment_method_id = pledge.stripe_payment_method_id
    assert payment_method_id is not None

    updated = card_event("payment_method.automatically_updated", payment_method_id, 3, 2038)
    late_older = card_event("payment_method.updated", payment_method_id, 12, 2034)
    deliver_event(client, db, updated)
    deliver_event(client, db, late_older)

    assert (fresh(db, pledge).card_exp_month, fresh(db, pledge).card_exp_year) == (3, 2038)
    with time_machine.travel(EXPIRY_MONTH, tick=False):
        assert queue_expiry_warnings(db, datetime.now(UTC)) == 0
    assert outbox(db, "card_expiring") == []


def test_a_warning_queued_before_the_reader_changed_the_card_is_not_sent(
    client: TestClient,
    pledge: Pledge,
    db: Session,
    smtp_server: CaughtMail,
    test_environment: dict[str, str],
) -> None:
    with time_machine.travel(EXPIRY_MONTH, tick=False):
        queue_expiry_warnings(db, datetime.now(UTC))
        db.commit()
        new_card = card_with_expiry(test_environment, 8, 2039)
        token = manage_token(pledge.id)
        changed = client.post(f"/manage/{token}/card", json={"payment_method": new_card})
        assert changed.json()["status"] == "updated"
        [warning] = outbox(db, "card_expiring")
        assert send_mail(warning.dedupe_key).outcome == "canceled"
        assert queue_expiry_warnings(db, datetime.now(UTC)) == 0

    after = fresh(db, pledge)
    assert (after.stripe_payment_method_id, after.card_exp_month, after.card_exp_year) == (
        new_card, 8, 2039,
    )  # fmt: skip
    assert smtp_server.messages == []


class ChargeSays:
    """Stripe, as far as the failed-invoice handler asks it: the charge and its decline code."""

    def __init__(self, failure_code: str) -> None:
        self.failure_code = failure_code

    def charge(self, charge_id: str) -> dict[str, Any]:
        return {"id": charge_id, "failure_code": self.failure_code, "outcome": {}}


@pytest.mark.parametrize(
    ("locale", "code", "words"),
    [
        ("en", "expired_card", "Why: your card has expired"),
        ("en", "insufficient_funds", "Why: your bank said there was not enough money"),
        ("en", "do_not_honor", "Why: your bank refused the payment without telling us"),
        ("en", "authentication_required", "Why: your bank wants you to confirm this payment"),
        ("ru", "expired_card", "Причина: срок действия карты истёк"),
        ("ru", "insufficient_funds", "Причина: банк сообщил, что на карте недостаточно средств"),
        ("ru", "generic_decline", "Причина: банк отклонил платёж, не сообщив нам причину"),
        ("ru", "authentication_required", "Причина: банк просит вас самостоятельно подтвердить"),
        ("de", "expired_card", "Grund: Ihre Karte ist abgelaufen"),
        ("de", "generic_decline", "Grund: Ihre Bank hat die Zahlung abgelehnt"),
    ],
)
def test_failed_payment_mail_says_why_from_the_decline_code(
    client: TestClient,
    db: Session,
    smtp_server: CaughtMail,
    locale: str,
    code: str,
    words: str,
) -> None:
    subscription_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=subscription_id, email=f"{uuid.uuid4().hex}@ex.org")
    pledge.locale = locale
    db.commit()
    assert pledge.stripe_customer_id is not None
    failed = invoice(new_id("in"), subscription_id, pledge.stripe_customer_id, status="open")
    failed["payments"] = {"object": "list", "data": [{"payment": {
        "type": "payment_intent", "payment_intent": new_id("pi"), "charge": new_id("ch"),
    }}]}  # fmt: skip
    kind = (
        "invoice.payment_action_required"
        if code == "authentication_required"
        else "invoice.payment_failed"
    )
    document = event(kind, failed)

    assert post_event(client, document).status_code == 200
    process(stored_event(db, document["id"]).id, stripe=ChargeSays(code))  # type: ignore[arg-type]
    [reminder] = [row for row in outbox(db) if row.dedupe_key.startswith("reminder:")]
    assert send_mail(reminder.dedupe_key).outcome == "sent"

    [message] = smtp_server.messages
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert words in text
    assert words.split(":")[0] in html
    assert VISA not in text
