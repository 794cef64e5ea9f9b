"""The manage page behind a signed link: amount, card, cancel, link re-request, export, erase."""

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import EmailOutbox, Pledge, Reader, StripeEvent
from billing.reader_links import manage_token
from tests.conftest import BrowserStripe

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
THREE_DS = "4000002500003155"
DECLINED = "4000000000000002"


def active_pledge(
    client: TestClient, browser: BrowserStripe, email: str = "reader@example.org", **extra: Any
) -> Pledge:
    body = {"email": email, "name": "Ada Reader", "amount": 500, "currency": "eur", **extra}
    created = client.post("/v1/pledges", json=body).json()
    card = {"payment_method": browser.create_payment_method(VISA)}
    confirmed = client.post(f"/v1/pledges/{created['id']}/confirm", json=card).json()
    assert confirmed["status"] == "active"
    from billing.db import get_sessionmaker

    with get_sessionmaker()() as session:
        pledge = session.get(Pledge, uuid.UUID(created["id"]))
        assert pledge is not None
        return pledge


def outbox(db: Session, template: str | None = None) -> list[EmailOutbox]:
    db.expire_all()
    query = select(EmailOutbox).order_by(EmailOutbox.id)
    if template:
        query = query.where(EmailOutbox.template == template)
    return list(db.scalars(query))


def fresh(db: Session, pledge: Pledge) -> Pledge:
    db.expire_all()
    found = db.get(Pledge, pledge.id)
    assert found is not None
    return found


@pytest.fixture
def pledge(client: TestClient, browser_stripe: BrowserStripe) -> Pledge:
    return active_pledge(client, browser_stripe)


def test_manage_page_shows_the_pledge_and_keeps_the_link_private(
    client: TestClient, pledge: Pledge
) -> None:
    page = client.get(f"/manage/{manage_token(pledge.id)}")

    assert page.status_code == 200
    assert "€5.00 a month" in page.text and "active" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


@pytest.mark.parametrize(
    "token",
    ["garbage", "tampered", "other-secret"],
)
def test_bad_token_shows_the_re_request_form_and_nothing_else(
    client: TestClient, pledge: Pledge, token: str
) -> None:
    if token == "tampered":
        good = manage_token(pledge.id)
        token = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    if token == "other-secret":
        from itsdangerous import URLSafeTimedSerializer

        from billing.reader_links import MANAGE_SALT

        token = URLSafeTimedSerializer("guess", salt=MANAGE_SALT).dumps(str(pledge.id))

    page = client.get(f"/manage/{token}")
    cancel = client.post(f"/manage/{token}/cancel", data={"reason": "x"})

    assert page.status_code == cancel.status_code == 404
    assert "not valid or has expired" in page.text
    assert "€5.00" not in page.text


def test_expired_link_is_refused(
    client: TestClient, pledge: Pledge, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time_machine

    with time_machine.travel(pledge.created_at, tick=False):
        token = manage_token(pledge.id)
    with time_machine.travel(pledge.created_at.timestamp() + 61 * 86400):
        page = client.get(f"/manage/{token}")

    assert page.status_code == 404


def test_changing_the_amount_switches_the_plan_in_stripe_and_mails_once(
    client: TestClient, pledge: Pledge, stripe_api: httpx.Client, db: Session
) -> None:
    token = manage_token(pledge.id)

    changed = client.post(
        f"/manage/{token}/amount", data={"amount": "12,50", "interval": "year"},
        follow_redirects=False,
    )  # fmt: skip
    again = client.post(
        f"/manage/{token}/amount", data={"amount": "12.5", "interval": "year"},
        follow_redirects=False,
    )  # fmt: skip

    assert changed.status_code == again.status_code == 303
    assert changed.headers["location"] == f"/manage/{token}?done=amount"
    after = fresh(db, pledge)
    assert (after.amount_minor, after.interval, after.stripe_plan_id) == (
        1250, "year", "pledge-eur-1250-year",
    )  # fmt: skip
    subscription = stripe_api.get(f"/v1/subscriptions/{after.stripe_subscription_id}").json()
    assert subscription["items"]["data"][0]["plan"]["id"] == "pledge-eur-1250-year"
    [mail] = outbox(db, "amount_changed")
    assert mail.to_email == "reader@example.org"
    assert mail.context["old_amount_minor"] == 500 and mail.context["new_amount_minor"] == 1250
    assert (mail.context["old_interval"], mail.context["new_interval"]) == ("month", "year")
    assert mail.context["manage_url"].startswith("http://127.0.0.1:8000/manage/")
    assert "changed" in client.get(f"/manage/{token}?done=amount").text


@pytest.mark.parametrize(
    ("amount", "interval", "message"),
    [
        ("1.50", "month", "The smallest pledge is €2.00."),
        ("seven", "month", "Enter an amount such as 5 or 7.50."),
        ("5.555", "month", "Enter an amount such as 5 or 7.50."),
        ("10", "once", "Choose monthly or yearly."),
    ],
)
def test_bad_amount_change_is_refused_and_changes_nothing(
    client: TestClient,
    pledge: Pledge,
    stripe_api: httpx.Client,
    db: Session,
    amount: str,
    interval: str,
    message: str,
) -> None:
    response = client.post(
        f"/manage/{manage_token(pledge.id)}/amount", data={"amount": amount, "interval": interval}
    )

    assert response.status_code == 422
    assert message in response.text
    assert fresh(db, pledge).amount_minor == 500
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["items"]["data"][0]["plan"]["id"] == "pledge-eur-500-month"
    assert outbox(db, "amount_changed") == []


def test_cancel_ends_the_subscription_keeps_the_reason_and_mails_once(
    client: TestClient, pledge: Pledge, stripe_api: httpx.Client, db: Session
) -> None:
    token = manage_token(pledge.id)

    first = client.post(f"/manage/{token}/cancel", data={"reason": "Moving abroad"})
    second = client.post(f"/manage/{token}/cancel", data={"reason": ""})

    assert first.status_code == second.status_code == 200  # after the redirect
    after = fresh(db, pledge)
    assert after.status == "canceled" and after.canceled_at is not None
    assert after.cancel_reason == "Moving abroad"
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["status"] == "canceled"
    assert [m.template for m in outbox(db)] == ["cancellation"]
    assert "Change my pledge" not in first.text


def test_a_canceled_pledge_can_no_longer_be_changed_or_paused(
    client: TestClient, pledge: Pledge, db: Session
) -> None:
    token = manage_token(pledge.id)
    client.post(f"/manage/{token}/cancel")

    amount = client.post(f"/manage/{token}/amount", data={"amount": "9", "interval": "month"})
    pause = client.post(f"/manage/{token}/pause")

    assert amount.status_code == pause.status_code == 409
    assert "not running any more" in amount.text
    assert fresh(db, pledge).amount_minor == 500


def test_card_update_makes_the_new_card_pay_this_pledge_and_mails_once(
    client: TestClient,
    pledge: Pledge,
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
) -> None:
    token = manage_token(pledge.id)
    card = {"payment_method": browser_stripe.create_payment_method(MASTERCARD)}

    done = client.post(f"/manage/{token}/card", json=card)
    repeated = client.post(f"/manage/{token}/card", json=card)

    assert done.status_code == repeated.status_code == 200
    assert done.json()["status"] == "updated"
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["default_payment_method"] == card["payment_method"]
    [mail] = outbox(db, "card_updated")
    assert mail.context["card_last4"] == "4444"


def test_card_update_with_3d_secure_finishes_after_the_bank_confirms(
    client: TestClient, pledge: Pledge, browser_stripe: BrowserStripe, stripe_api: httpx.Client
) -> None:
    token = manage_token(pledge.id)
    card = {"payment_method": browser_stripe.create_payment_method(THREE_DS)}

    asked = client.post(f"/manage/{token}/card", json=card).json()
    assert asked["status"] == "requires_action" and asked["client_secret"].startswith("seti_")
    too_early = client.post(
        f"/manage/{token}/card/confirm", json={"setup_intent_id": asked["setup_intent_id"]}
    )
    browser_stripe.handle_next_action(asked["client_secret"], success=True)
    done = client.post(
        f"/manage/{token}/card/confirm", json={"setup_intent_id": asked["setup_intent_id"]}
    )

    assert too_early.status_code == 409
    assert done.json()["status"] == "updated"
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["default_payment_method"] == card["payment_method"]


def test_declined_card_update_changes_nothing(
    client: TestClient, pledge: Pledge, browser_stripe: BrowserStripe, stripe_api: httpx.Client
) -> None:
    card = {"payment_method": browser_stripe.create_payment_method(DECLINED)}

    response = client.post(f"/manage/{manage_token(pledge.id)}/card", json=card)

    assert response.status_code == 402
    assert "declined" in response.json()["message"]
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["default_payment_method"] != card["payment_method"]


def test_card_update_from_another_pledge_is_refused(
    client: TestClient, pledge: Pledge, browser_stripe: BrowserStripe, stripe_api: httpx.Client
) -> None:
    other = active_pledge(client, browser_stripe, email="other@example.org")
    card = {"payment_method": browser_stripe.create_payment_method(THREE_DS)}
    started = client.post(f"/manage/{manage_token(other.id)}/card", json=card).json()
    browser_stripe.handle_next_action(started["client_secret"], success=True)

    response = client.post(
        f"/manage/{manage_token(pledge.id)}/card/confirm",
        json={"setup_intent_id": started["setup_intent_id"]},
    )
    # Nor may another reader's saved card be named by its id.
    client.post(
        f"/manage/{manage_token(other.id)}/card/confirm",
        json={"setup_intent_id": started["setup_intent_id"]},
    )
    reused = client.post(f"/manage/{manage_token(pledge.id)}/card", json=card)

    assert response.status_code == 404
    assert reused.status_code == 409
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["default_payment_method"] != card["payment_method"]


def test_link_request_answers_the_same_for_known_and_unknown_addresses(
    client: TestClient, pledge: Pledge, db: Session
) -> None:
    known = client.post("/manage/link", data={"email": "Reader@Example.org"})
    repeated = client.post("/manage/link", data={"email": "reader@example.org"})
    unknown = client.post("/manage/link", data={"email": "nobody@example.org"})

    assert known.status_code == repeated.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    [mail] = outbox(db, "manage_link")
    assert mail.to_email == "reader@example.org"
    [link] = mail.context["links"]
    token = link["manage_url"].rsplit("/", 1)[1]
    assert client.get(f"/manage/{token}").status_code == 200
    assert (link["amount_minor"], link["currency"], link["interval"]) == (500, "eur", "month")


def test_link_requests_are_rate_limited(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses = [
        client.post("/manage/link", data={"email": "flood@example.org"}).status_code
        for _ in range(6)
    ]

    assert statuses == [200] * 5 + [429]


def test_link_request_with_a_malformed_address_is_a_422(client: TestClient, db: Session) -> None:
    response = client.post("/manage/link", data={"email": "not-an-address"})

    assert response.status_code == 422
    assert "valid email address" in response.text


def test_export_holds_everything_about_the_reader_but_no_internal_keys(
    client: TestClient, pledge: Pledge
) -> None:
    response = client.get(f"/manage/{manage_token(pledge.id)}/export")

    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    exported = response.json()
    assert exported["reader"]["email"] == "reader@example.org"
    assert exported["reader"]["name"] == "Ada Reader"
    [row] = exported["pledges"]
    assert row["id"] == str(pledge.id) and row["amount_minor"] == 500
    assert "idempotency_key" not in row and "request_fingerprint" not in row


def test_erase_anonymises_the_reader_stops_the_pledge_and_keeps_the_ledger(
    client: TestClient, pledge: Pledge, stripe_api: httpx.Client, db: Session
) -> None:
    token = manage_token(pledge.id)
    client.post(f"/manage/{token}/cancel", data={"reason": "Call me at 555-0100"})
    unconfirmed = client.post(f"/manage/{token}/erase")

    erased = client.post(f"/manage/{token}/erase", data={"confirm": "erase"})

    assert unconfirmed.status_code == 422
    assert erased.status_code == 200 and "erased" in erased.text
    db.expire_all()
    reader = db.scalars(select(Reader)).one()
    assert reader.email == f"erased+{reader.id}@invalid" and reader.name is None
    assert reader.erased_at is not None
    after = fresh(db, pledge)
    assert after.amount_minor == 500 and after.cancel_reason is None
    assert all(m.to_email == reader.email and m.context == {} for m in outbox(db))
    assert [m.status for m in outbox(db)] == ["canceled"]  # the unsent cancellation
    assert stripe_api.get(f"/v1/customers/{pledge.stripe_customer_id}").status_code == 404
    assert client.get(f"/manage/{token}").status_code == 404
    again = client.post("/manage/link", data={"email": "reader@example.org"})
    assert again.status_code == 200 and outbox(db, "manage_link") == []


def test_erase_stops_a_running_subscription(
    client: TestClient, pledge: Pledge, stripe_api: httpx.Client, db: Session
) -> None:
    client.post(f"/manage/{manage_token(pledge.id)}/erase", data={"confirm": "erase"})

    assert fresh(db, pledge).status == "canceled"
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription.get("status", "canceled") == "canceled"


def test_operators_export_and_erase_a_reader_from_the_command_line(
    client: TestClient, pledge: Pledge, db: Session
) -> None:
    import json

    from typer.testing import CliRunner

    from billing.cli import app

    runner = CliRunner()
    exported = runner.invoke(app, ["reader", "export", "READER@example.org"])
    refused = runner.invoke(app, ["reader", "erase", "reader@example.org"])
    erased = runner.invoke(app, ["reader", "erase", "reader@example.org", "--yes"])
    unknown = runner.invoke(app, ["reader", "export", "reader@example.org"])

    assert exported.exit_code == 0
    assert json.loads(exported.stdout)["pledges"][0]["id"] == str(pledge.id)
    assert refused.exit_code == 2
    assert erased.exit_code == 0
    assert unknown.exit_code == 1
    db.expire_all()
    assert db.scalars(select(Reader)).one().erased_at is not None


def test_manage_tokens_never_reach_the_access_log(
    client: TestClient, pledge: Pledge, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    token = manage_token(pledge.id)
    access = logging.getLogger("uvicorn.access")

    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        # The shape uvicorn logs each request in.
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000", "GET", f"/manage/{token}/export?x=1", "1.1", 200,
        )  # fmt: skip
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", "/manage/link", "1.1", 200)
        access.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/monthly/{token}", "1.1", 200
        )

    assert token not in caplog.text
    assert "/monthly/[token]" in caplog.text
    assert "/manage/[token]/export?x=1" in caplog.text
    assert "/manage/link" in caplog.text


def test_asking_for_links_does_not_use_up_the_pledge_limit(client: TestClient, db: Session) -> None:
    for _ in range(5):
        client.post("/manage/link", data={"email": "both@example.org"})

    pledged = client.post(
        "/v1/pledges", json={"email": "both@example.org", "amount": 500, "currency": "eur"}
    )

    assert pledged.status_code == 201


def test_manage_page_speaks_the_readers_language(
    client: TestClient, browser_stripe: BrowserStripe
) -> None:
    russian = active_pledge(client, browser_stripe, email="ru@example.org", locale="ru")
    token = manage_token(russian.id)

    page = client.get(f"/manage/{token}")
    client.post(f"/manage/{token}/cancel")
    canceled = client.get(f"/manage/{token}?done=cancel")
    request_form = client.get("/manage", headers={"Accept-Language": "ru-RU,ru;q=0.9"})

    assert '<html lang="ru">' in page.text
    assert "Ваша поддержка" in page.text and "5,00\xa0€ в месяц" in page.text
    assert "Поддержка отменена." in canceled.text
    assert "Прислать ссылку" in request_form.text


def test_manage_and_save_pages_in_german_with_plurals_and_a_german_error(
    client: TestClient, browser_stripe: BrowserStripe
) -> None:
    german = active_pledge(client, browser_stripe, email="de@example.org", locale="de")
    token = manage_token(german.id)

    page = client.get(f"/manage/{token}")
    refused = client.post(f"/manage/{token}/amount", data={"amount": "viel", "interval": "month"})
    save = client.post(f"/manage/{token}/cancel/start", follow_redirects=True)
    russian_save = client.post(
        f"/manage/{manage_token(active_pledge(client, browser_stripe, locale='ru').id)}"
        "/cancel/start",
        follow_redirects=True,
    )
    unknown = client.get("/manage/not-a-token", headers={"Accept-Language": "de-CH, en;q=0.5"})

    assert '<html lang="de">' in page.text
    assert "Ihre Unterstützung" in page.text and "5,00\xa0€ im Monat" in page.text
    assert '<dd id="status">aktiv</dd>' in page.text
    assert refused.status_code == 422
    assert "Bitte geben Sie einen Betrag wie 5 oder 7,50 ein." in refused.text
    assert all(f"{n} Monat{'e' if n > 1 else ''} (bis " in save.text for n in (1, 2, 3))
    assert all(words in russian_save.text for words in ("1 месяц (до ", "2 месяца (до "))
    assert unknown.status_code == 404 and "Dieser Link ist ungültig" in unknown.text


FIXTURES = json.loads(
    (Path(__file__).resolve().parents[2] / "webhooks" / "stripe_objects.json").read_text()
)["resources"]


def test_erase_scrubs_names_and_emails_from_stored_webhook_events(
    client: TestClient, pledge: Pledge, db: Session
) -> None:
    invoice = copy.deepcopy(FIXTURES["invoice"])
    invoice.update(
        customer=pledge.stripe_customer_id, customer_email="reader@example.org",
        customer_name="Ada Reader", amount_paid=500,
    )  # fmt: skip
    event = copy.deepcopy(FIXTURES["event"])
    event.update(id="evt_erase_1", type="invoice.paid", data={"object": invoice})
    db.add(
        StripeEvent(
            stripe_event_id=event["id"], type=event["type"], payload=event,
            stripe_created_at=pledge.created_at, status="handled",
        )
    )  # fmt: skip
    db.commit()

    client.post(f"/manage/{manage_token(pledge.id)}/erase", data={"confirm": "erase"})

    db.expire_all()
    stored = db.scalars(select(StripeEvent)).one().payload["data"]["object"]
    assert stored["customer_email"] == stored["customer_name"] == "[erased]"
    assert stored["customer"] == pledge.stripe_customer_id and stored["amount_paid"] == 500
    assert "reader@example.org" not in json.dumps(stored)
