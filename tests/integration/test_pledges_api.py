"""Pledge creation and confirmation through the API, against PostgreSQL and localstripe."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.models import Pledge, Reader
from tests.conftest import BrowserStripe, free_port

VISA = "4242424242424242"
DECLINED_ON_SETUP = "4000000000000002"
DECLINED_ON_CHARGE = "4000000000000341"
THREE_DS_ON_SETUP = "4000002500003155"
THREE_DS_ALWAYS = "4000002760003184"


def pledge_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "reader@example.org",
        "name": "Ada Reader",
        "amount": 500,
        "currency": "eur",
        "interval": "month",
    }
    body.update(overrides)
    return body


def pledge_with_card(
    client: TestClient, browser: BrowserStripe, card: str = VISA, **overrides: Any
) -> tuple[dict[str, Any], httpx.Response]:
    created = client.post("/v1/pledges", json=pledge_body(**overrides))
    assert created.status_code == 201, created.text
    return created.json(), try_card(client, browser, created.json()["id"], card)


def try_card(
    client: TestClient, browser: BrowserStripe, pledge_id: str, card: str
) -> httpx.Response:
    payment_method = browser.create_payment_method(card)
    return client.post(f"/v1/pledges/{pledge_id}/confirm", json={"payment_method": payment_method})


def finish(client: TestClient, pledge_id: str) -> httpx.Response:
    """The widget's second confirm, after Stripe.js's 3-D Secure step."""
    return client.post(f"/v1/pledges/{pledge_id}/confirm", json={})


def count(db: Session, model: type[Any]) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize(("interval", "stripe_interval"), [("month", "month"), ("year", "year")])
def test_recurring_pledge_becomes_active_subscription_in_stripe(
    client: TestClient,
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
    interval: str,
    stripe_interval: str,
) -> None:
    created, confirmed = pledge_with_card(
        client, browser_stripe, amount=750, currency="usd", interval=interval
    )

    assert created["status"] == "pending"
    assert created["publishable_key"].startswith("pk_test_")
    assert confirmed.status_code == 200
    assert confirmed.json() == {
        "id": created["id"], "status": "active", "client_secret": None, "reason": None,
        "cards_left": None, "upgrade_url": None,
    }  # fmt: skip
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.status == "active" and pledge.activated_at is not None
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["status"] == "active"
    assert subscription["customer"] == pledge.stripe_customer_id
    assert subscription["metadata"]["pledge_id"] == created["id"]
    plan = subscription["items"]["data"][0]["plan"]
    assert (plan["amount"], plan["currency"], plan["interval"]) == (750, "usd", stripe_interval)


def test_one_time_gift_is_a_payment_intent_not_a_subscription(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created, confirmed = pledge_with_card(client, browser_stripe, amount=1200, interval="once")

    assert confirmed.json()["status"] == "active"
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.stripe_subscription_id is None
    intent = stripe_api.get(f"/v1/payment_intents/{pledge.stripe_payment_intent_id}").json()
    assert (intent["status"], intent["amount"], intent["currency"]) == ("succeeded", 1200, "eur")
    assert (
        stripe_api.get("/v1/subscriptions", params={"customer": pledge.stripe_customer_id}).json()[
            "data"
        ]
        == []
    )


def test_cover_fees_charges_the_amount_plus_the_card_fee(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created, _confirmed = pledge_with_card(client, browser_stripe, amount=500, cover_fees=True)

    # 2.9% + 0.30: (500 + 30) / 0.971 = 545.83 → 546, so the newsroom keeps at least 5.00.
    assert (created["amount"], created["fee_cover"], created["total_amount"]) == (500, 46, 546)
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None
    subscription = stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json()
    assert subscription["items"]["data"][0]["plan"]["amount"] == 546


def test_pledges_of_the_same_shape_share_one_plan(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client
) -> None:
    pledge_with_card(client, browser_stripe, email="one@example.org", amount=300)
    pledge_with_card(client, browser_stripe, email="two@example.org", amount=300)

    plans = stripe_api.get("/v1/plans", params={"limit": 100}).json()["data"]
    assert [p["id"] for p in plans].count("pledge-eur-300-month") == 1


def test_card_declined_at_setup_starts_nothing_and_another_card_may_follow(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created = client.post("/v1/pledges", json=pledge_body()).json()

    declined = try_card(client, browser_stripe, created["id"], DECLINED_ON_SETUP)

    assert declined.status_code == 200
    assert declined.json()["status"] == "failed" and declined.json()["cards_left"] == 2
    assert "declined" in declined.json()["reason"]
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.status == "pending"
    customer = pledge.stripe_customer_id
    assert stripe_api.get("/v1/subscriptions", params={"customer": customer}).json()["data"] == []

    accepted = try_card(client, browser_stripe, created["id"], VISA)
    assert accepted.json()["status"] == "active"


@pytest.mark.parametrize("interval", ["month", "once"])
def test_card_declined_on_first_charge_fails_with_a_reason_a_reader_understands(
    client: TestClient,
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
    interval: str,
) -> None:
    created = client.post("/v1/pledges", json=pledge_body(interval=interval)).json()
    confirmed = try_card(client, browser_stripe, created["id"], DECLINED_ON_CHARGE)

    body = confirmed.json()
    assert confirmed.status_code == 200
    assert body["status"] == "failed" and body["cards_left"] == 2
    assert "declined" in body["reason"] and "try another card" in body["reason"]
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.status == "pending"
    if interval == "month":
        subscriptions = stripe_api.get(
            "/v1/subscriptions", params={"customer": pledge.stripe_customer_id, "status": "all"}
        ).json()["data"]
        assert [s["status"] for s in subscriptions] == ["canceled"]

    # Nothing of the failed card is left to finish: the reader must enter a card again.
    assert finish(client, created["id"]).status_code == 409


def test_third_declined_card_fails_the_pledge_and_a_fourth_is_refused(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    created = client.post("/v1/pledges", json=pledge_body()).json()

    answers = [try_card(client, browser_stripe, created["id"], DECLINED_ON_CHARGE).json()
               for _ in range(3)]  # fmt: skip
    fourth = try_card(client, browser_stripe, created["id"], VISA)

    assert [a["cards_left"] for a in answers] == [2, 1, 0]
    assert fourth.status_code == 429 and "Too many cards" in fourth.json()["message"]
    db.expire_all()
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.status == "failed" and pledge.card_attempts == 3


def test_3d_secure_at_setup_refused_fails_that_card_and_ends_its_intent(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created = client.post("/v1/pledges", json=pledge_body()).json()
    asked = try_card(client, browser_stripe, created["id"], THREE_DS_ON_SETUP).json()
    browser_stripe.handle_next_action(asked["client_secret"], success=False)

    confirmed = finish(client, created["id"])

    assert confirmed.json()["status"] == "failed" and confirmed.json()["cards_left"] == 2
    assert db.get(Pledge, uuid.UUID(created["id"])).status == "pending"  # type: ignore[union-attr]
    setup_intent_id = asked["client_secret"].split("_secret_")[0]
    setup_intent = stripe_api.get(f"/v1/setup_intents/{setup_intent_id}").json()
    assert setup_intent["status"] == "canceled"


@pytest.mark.parametrize("interval", ["month", "once"])
def test_3d_secure_on_first_charge_requires_action_then_activates(
    client: TestClient,
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
    interval: str,
) -> None:
    created, confirmed = pledge_with_card(
        client, browser_stripe, card=THREE_DS_ALWAYS, interval=interval
    )

    # This card asks for 3-D Secure when it is saved and again at the first charge.
    secrets = []
    while confirmed.json()["status"] == "requires_action":
        secrets.append(confirmed.json()["client_secret"])
        pledge = db.get(Pledge, uuid.UUID(created["id"]))
        assert pledge is not None and pledge.status == "pending"
        browser_stripe.handle_next_action(secrets[-1], success=True)
        confirmed = finish(client, created["id"])
        db.expire_all()

    assert secrets[0].startswith("seti_") and secrets[-1].startswith("pi_")
    assert confirmed.json()["status"] == "active"
    assert db.get(Pledge, uuid.UUID(created["id"])).status == "active"  # type: ignore[union-attr]


def test_3d_secure_refused_by_the_reader_fails_that_card(
    client: TestClient, browser_stripe: BrowserStripe
) -> None:
    created, confirmed = pledge_with_card(client, browser_stripe, card=THREE_DS_ALWAYS)
    browser_stripe.handle_next_action(confirmed.json()["client_secret"], success=True)
    charged = finish(client, created["id"])
    assert charged.json()["status"] == "requires_action"

    browser_stripe.handle_next_action(charged.json()["client_secret"], success=False)
    after = finish(client, created["id"])

    assert after.json()["status"] == "failed"
    assert after.json()["reason"] and after.json()["cards_left"] == 2


def test_confirming_twice_changes_nothing_in_stripe(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created, first = pledge_with_card(client, browser_stripe)

    second = finish(client, created["id"])

    assert first.json() == second.json()
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None
    subscriptions = stripe_api.get(
        "/v1/subscriptions", params={"customer": pledge.stripe_customer_id}
    ).json()["data"]
    assert len(subscriptions) == 1


def test_idempotency_key_returns_the_same_pledge_and_creates_nothing_new(
    client: TestClient, stripe_api: httpx.Client, db: Session
) -> None:
    headers = {"Idempotency-Key": "widget-" + uuid.uuid4().hex}
    # An address of its own: localstripe keeps every earlier test's customers, more than a page.
    body = pledge_body(email=f"idempotent-{uuid.uuid4().hex[:8]}@example.org")

    first = client.post("/v1/pledges", json=body, headers=headers)
    second = client.post("/v1/pledges", json=body, headers=headers)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert count(db, Pledge) == 1
    customers = stripe_api.get("/v1/customers", params={"email": body["email"], "limit": 100})
    assert len(customers.json()["data"]) == 1


def test_idempotency_key_reused_with_another_body_is_refused(
    client: TestClient, db: Session
) -> None:
    headers = {"Idempotency-Key": "widget-" + uuid.uuid4().hex}
    client.post("/v1/pledges", json=pledge_body(amount=500), headers=headers)

    reused = client.post("/v1/pledges", json=pledge_body(amount=900), headers=headers)

    assert reused.status_code == 409
    assert "Idempotency-Key" in reused.json()["message"]
    assert count(db, Pledge) == 1


def test_concurrent_requests_with_one_idempotency_key_make_one_pledge(
    client: TestClient, db: Session
) -> None:
    headers = {"Idempotency-Key": "widget-" + uuid.uuid4().hex}

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(
            pool.map(
                lambda _: client.post("/v1/pledges", json=pledge_body(), headers=headers), range(4)
            )
        )

    assert {r.status_code for r in responses} <= {201, 409}
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1
    assert count(db, Pledge) == 1


def test_one_reader_per_email_whatever_the_case(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    pledge_with_card(client, browser_stripe, email="Reader@Example.org")
    pledge_with_card(client, browser_stripe, email="reader@example.org", interval="once")

    assert count(db, Reader) == 1
    assert count(db, Pledge) == 2
    reader = db.scalars(select(Reader)).one()
    assert reader.email == "reader@example.org" and reader.stripe_customer_id


BAD_INPUTS = [
    ("amount 0", {"amount": 0}, "smallest pledge is €2.00"),
    ("amount 199", {"amount": 199}, "smallest pledge is €2.00"),
    ("negative amount", {"amount": -500}, "smallest pledge"),
    ("float amount", {"amount": 5.5}, "whole number of minor units"),
    ("integral float", {"amount": 500.0}, "whole number of minor units"),
    ("string amount", {"amount": "500"}, "whole number of minor units"),
    ("boolean amount", {"amount": True}, "whole number of minor units"),
    ("huge amount", {"amount": 10**12}, "largest pledge"),
    ("beyond 64 bits", {"amount": 10**30}, "largest pledge"),
    ("unknown currency", {"currency": "xxx"}, "XXX is not a currency we accept"),
    ("currency not enabled", {"currency": "jpy"}, "Choose one of EUR, USD, GBP"),
    ("currency too long", {"currency": "euro"}, "three-letter code"),
    ("weekly", {"interval": "week"}, "month, year or once"),
    ("missing email", {"email": None}, "email is required"),
    ("malformed email", {"email": "not-an-email"}, "valid email address"),
    ("email without domain", {"email": "reader@"}, "valid email address"),
    ("cover_fees not a bool", {"cover_fees": "yes"}, "true or false"),
    ("unknown field", {"amount_major": 5}, "Unknown field: amount_major"),
    ("malformed locale", {"locale": "english!"}, "language code such as en or de"),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(c, e) for _, c, e in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS]
)
def test_bad_input_is_a_422_with_a_clear_message_and_leaves_nothing_behind(
    client: TestClient, stripe_api: httpx.Client, db: Session, change: dict[str, Any], expected: str
) -> None:
    body = pledge_body(**change)
    body = {key: value for key, value in body.items() if value is not None}
    customers_before = len(stripe_api.get("/v1/customers", params={"limit": 100}).json()["data"])

    response = client.post("/v1/pledges", json=body)

    assert response.status_code == 422, response.text
    assert expected in response.json()["message"]
    assert count(db, Pledge) == 0 and count(db, Reader) == 0
    customers_after = len(stripe_api.get("/v1/customers", params={"limit": 100}).json()["data"])
    assert customers_after == customers_before


@pytest.mark.parametrize(
    ("asked", "stored"),
    [("de", "de"), ("de-AT", "de"), ("ru_RU", "ru"), ("fr", "en"), ("xx", "en")],
)
def test_a_pledge_keeps_the_closest_enabled_language_and_english_for_any_other(
    client: TestClient, db: Session, asked: str, stored: str
) -> None:
    response = client.post("/v1/pledges", json=pledge_body(locale=asked))

    assert response.status_code == 201, response.text
    pledge = db.scalars(select(Pledge)).one()
    assert pledge.locale == stored
    assert db.get(Reader, pledge.reader_id).locale == stored  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("de-DE,de;q=0.9,en;q=0.5", "Der kleinste Beitrag ist 2,00\xa0€."),
        ("ru", "Минимальная сумма — 2,00\xa0€."),
        ("fr, en;q=0.1", "The smallest pledge is €2.00."),
        ("", "The smallest pledge is €2.00."),
    ],
)
def test_an_error_speaks_the_language_the_client_asks_for(
    client: TestClient, language: str, message: str
) -> None:
    response = client.post(
        "/v1/pledges", json=pledge_body(amount=150), headers={"Accept-Language": language}
    )

    assert response.status_code == 422
    assert response.json()["message"] == message
    assert response.json()["detail"][0]["msg"] == message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "request body is required"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"pledge"', "must be a JSON object"),
    ],
)
def test_malformed_body_is_a_422(
    client: TestClient, db: Session, content: bytes, expected: str
) -> None:
    response = client.post(
        "/v1/pledges", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert expected in response.json()["message"]
    assert count(db, Pledge) == 0


def test_huge_body_is_refused_before_it_is_read(client: TestClient, db: Session) -> None:
    body = pledge_body(name="x" * 200_000)

    response = client.post("/v1/pledges", json=body)

    assert response.status_code == 413
    assert count(db, Pledge) == 0


def test_overlong_idempotency_key_is_a_422(client: TestClient, db: Session) -> None:
    response = client.post(
        "/v1/pledges", json=pledge_body(), headers={"Idempotency-Key": "k" * 300}
    )

    assert response.status_code == 422
    assert count(db, Pledge) == 0


@pytest.mark.parametrize("pledge_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
def test_confirming_an_unknown_pledge_is_a_404(
    client: TestClient, db: Session, pledge_id: str
) -> None:
    response = client.post(f"/v1/pledges/{pledge_id}/confirm", json={})

    assert response.status_code == 404
    assert response.json()["message"] == "No pledge with this id."


def test_confirm_before_the_card_is_set_up_is_a_409(client: TestClient, db: Session) -> None:
    created = client.post("/v1/pledges", json=pledge_body()).json()

    response = finish(client, created["id"])

    assert response.status_code == 409
    assert "Enter the card details first" in response.json()["message"]
    assert db.get(Pledge, uuid.UUID(created["id"])).status == "pending"  # type: ignore[union-attr]


def test_minimum_and_currencies_are_configurable(
    client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing.db import reset_caches

    monkeypatch.setenv("MIN_AMOUNT", "5")
    monkeypatch.setenv("CURRENCIES", "sek,EUR")
    reset_caches()
    try:
        from billing.app import create_app

        with TestClient(create_app()) as configured:
            too_small = configured.post("/v1/pledges", json=pledge_body(amount=499))
            usd = configured.post("/v1/pledges", json=pledge_body(currency="usd"))
            sek = configured.post("/v1/pledges", json=pledge_body(currency="SEK", amount=5000))
    finally:
        monkeypatch.undo()
        reset_caches()

    assert too_small.status_code == 422 and "€5.00" in too_small.json()["message"]
    assert usd.status_code == 422 and "Choose one of SEK, EUR" in usd.json()["message"]
    assert sek.status_code == 201 and sek.json()["currency"] == "sek"


def test_concurrent_confirms_start_one_subscription(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created = client.post("/v1/pledges", json=pledge_body()).json()
    card = {"payment_method": browser_stripe.create_payment_method(VISA)}

    with ThreadPoolExecutor(max_workers=4) as pool:
        confirm = f"/v1/pledges/{created['id']}/confirm"
        responses = list(pool.map(lambda _: client.post(confirm, json=card), range(4)))

    assert [r.json()["status"] for r in responses] == ["active"] * 4
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None
    subscriptions = stripe_api.get(
        "/v1/subscriptions", params={"customer": pledge.stripe_customer_id}
    ).json()["data"]
    assert len(subscriptions) == 1


def test_stripe_unreachable_is_a_503_that_leaves_nothing_behind(
    client: TestClient, db: Session, test_environment: dict[str, str]
) -> None:
    from billing.settings import Settings
    from billing.stripe_gateway import StripeGateway, get_gateway

    unreachable = Settings(**{  # type: ignore[arg-type]
        "stripe_api_key": test_environment["STRIPE_API_KEY"],
        "stripe_api_base": f"http://127.0.0.1:{free_port()}",
    })  # fmt: skip
    client.app.dependency_overrides[get_gateway] = lambda: StripeGateway(unreachable)  # type: ignore[attr-defined]
    try:
        response = client.post(
            "/v1/pledges", json=pledge_body(), headers={"Idempotency-Key": "outage-1"}
        )
    finally:
        client.app.dependency_overrides.clear()  # type: ignore[attr-defined]

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "try again" in response.json()["message"]
    assert count(db, Pledge) == 0 and count(db, Reader) == 0

    retried = client.post(
        "/v1/pledges", json=pledge_body(), headers={"Idempotency-Key": "outage-1"}
    )
    assert retried.status_code == 201
