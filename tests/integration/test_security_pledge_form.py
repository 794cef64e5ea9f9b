"""The pledge form as a card tester and an impostor use it: every attempt fails against the stack.

Real localstripe, PostgreSQL and Redis; the browser's part (Stripe.js) is played by BrowserStripe.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from billing.models import Pledge, Reader
from billing.reader_links import manage_token
from tests.conftest import BrowserStripe
from tests.stripe_events import deliver, event

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
THREE_DS = "4000002500003155"
# Stolen-card lists are mostly declines: cards that fail when saved, and when charged.
TESTED_CARDS = [
    "4000000000000002", "4000000000009995", "4000000000009987", "4000000000000069",
    "4000000000000127", "4000000000000341", "4000000000000119", "4242424242424241",
]  # fmt: skip


def body(email: str = "reader@example.org", **overrides: Any) -> dict[str, Any]:
    return {"email": email, "name": "Ada Reader", "amount": 500, "currency": "eur", **overrides}


def confirm(client: TestClient, pledge_id: str, payment_method: str | None) -> httpx.Response:
    card = {"payment_method": payment_method} if payment_method else {}
    return client.post(f"/v1/pledges/{pledge_id}/confirm", json=card)


def every_setup_intent(stripe_api: httpx.Client) -> list[dict[str, Any]]:
    """All of this run's SetupIntents in localstripe, page after page."""
    intents: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": 100}
        if intents:
            params["starting_after"] = intents[-1]["id"]
        page = stripe_api.get("/v1/setup_intents", params=params).json()
        intents += page["data"]
        if not page.get("has_more"):
            return intents


@pytest.fixture
def client_at(db: Session) -> Iterator[Any]:
    """Clients of one app seen from given addresses."""
    from billing.app import create_app

    app = create_app()
    clients: list[TestClient] = []

    def build(host: str) -> TestClient:
        clients.append(TestClient(app, client=(host, 50000)))
        return clients[-1]

    yield build
    for client in clients:
        client.close()


def test_no_answer_of_the_pledge_form_holds_a_secret_that_confirms_cards(
    client: TestClient, browser_stripe: BrowserStripe
) -> None:
    created = client.post("/v1/pledges", json=body())
    confirmed = confirm(client, created.json()["id"], browser_stripe.create_payment_method(VISA))
    replayed = client.post("/v1/pledges", json=body(), headers={"Idempotency-Key": "k-1"})

    for response in (created, confirmed, replayed):
        assert "_secret_" not in response.text
    assert confirmed.json()["status"] == "active"


def test_a_card_testing_script_gets_three_cards_per_pledge_and_stripe_sees_no_more(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created = client.post("/v1/pledges", json=body("tester@example.org")).json()

    statuses = [
        confirm(client, created["id"], browser_stripe.create_payment_method(number)).status_code
        for number in TESTED_CARDS
    ]

    # Three declines, then the decline limit and the pledge's own limit refuse before Stripe.
    assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]
    db.expire_all()
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.status == "failed" and pledge.card_attempts == 3
    tried = [
        i for i in every_setup_intent(stripe_api) if i["metadata"].get("pledge_id") == created["id"]
    ]
    assert len(tried) == 3 and all(i["status"] == "canceled" for i in tried)


def test_one_ipv6_subscriber_is_one_client_for_the_limits(
    client_at: Any, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing.db import reset_caches

    monkeypatch.setenv("RATE_LIMIT_PER_IP", "3/hour")
    reset_caches()
    try:
        statuses = [
            client_at(f"2001:db8:1:2::{n:x}")
            .post("/v1/pledges", json=body(f"r{n}@example.org"))
            .status_code
            for n in range(1, 6)
        ]
        neighbour = client_at("2001:db8:1:3::1").post("/v1/pledges", json=body("n@example.org"))
    finally:
        monkeypatch.undo()
        reset_caches()

    assert statuses == [201, 201, 201, 429, 429]
    assert neighbour.status_code == 201


def test_the_3d_secure_secret_confirms_nothing_once_that_card_failed(
    client: TestClient, browser_stripe: BrowserStripe
) -> None:
    created = client.post("/v1/pledges", json=body()).json()
    asked = confirm(client, created["id"], browser_stripe.create_payment_method(THREE_DS)).json()
    secret = asked["client_secret"]
    browser_stripe.handle_next_action(secret, success=False)

    assert confirm(client, created["id"], None).json()["status"] == "failed"
    assert browser_stripe.try_card_at_stripe(secret, VISA) == 400


def test_a_card_swapped_in_with_the_3d_secure_secret_is_not_charged(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created = client.post("/v1/pledges", json=body()).json()
    asked = confirm(client, created["id"], browser_stripe.create_payment_method(THREE_DS)).json()

    # Instead of authenticating the card we checked, the script confirms another one at Stripe.
    assert browser_stripe.try_card_at_stripe(asked["client_secret"], VISA) == 200
    finished = confirm(client, created["id"], None).json()

    assert finished["status"] == "failed"
    pledge = db.get(Pledge, uuid.UUID(created["id"]))
    assert pledge is not None and pledge.stripe_subscription_id is None
    subscriptions = stripe_api.get(
        "/v1/subscriptions", params={"customer": pledge.stripe_customer_id, "status": "all"}
    ).json()["data"]
    assert subscriptions == []


def test_a_setup_failure_stripe_reports_ends_that_intent(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    created = client.post("/v1/pledges", json=body()).json()
    asked = confirm(client, created["id"], browser_stripe.create_payment_method(THREE_DS)).json()
    setup_intent = stripe_api.get(
        f"/v1/setup_intents/{asked['client_secret'].split('_secret_')[0]}"
    ).json()

    deliver(client, db, event("setup_intent.setup_failed", setup_intent))

    after = stripe_api.get(f"/v1/setup_intents/{setup_intent['id']}").json()
    assert after["status"] == "canceled"
    assert browser_stripe.try_card_at_stripe(asked["client_secret"], VISA) == 400


def update_cards_of_a_running_pledge(
    client: TestClient, browser: BrowserStripe, numbers: list[str]
) -> list[int]:
    """The manage page's card update, once per card number, on a fresh active pledge."""
    created = client.post("/v1/pledges", json=body()).json()
    confirm(client, created["id"], browser.create_payment_method(VISA))
    token = manage_token(uuid.UUID(created["id"]))
    return [
        client.post(
            f"/manage/{token}/card", json={"payment_method": browser.create_payment_method(number)}
        ).status_code
        for number in numbers
    ]


def test_manage_page_card_updates_are_limited_per_pledge(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    statuses = update_cards_of_a_running_pledge(client, browser_stripe, [MASTERCARD] * 4)

    assert statuses == [200, 200, 200, 429]


def test_manage_page_card_declines_count_like_the_pledge_forms(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    statuses = update_cards_of_a_running_pledge(client, browser_stripe, TESTED_CARDS[:5])

    # DECLINE_LIMIT is 3/hour per network, email and card.
    assert statuses == [402, 402, 402, 429, 429]


def test_an_impostor_changes_nothing_of_a_known_reader(
    client: TestClient, browser_stripe: BrowserStripe, stripe_api: httpx.Client, db: Session
) -> None:
    reader_card = browser_stripe.create_payment_method(VISA)
    own = client.post("/v1/pledges", json=body(locale="en")).json()
    assert confirm(client, own["id"], reader_card).json()["status"] == "active"

    impostor = client.post(
        "/v1/pledges", json=body("Reader@Example.org", name="Mallory", locale="ru")
    ).json()
    impostor_card = browser_stripe.create_payment_method(MASTERCARD)
    assert confirm(client, impostor["id"], impostor_card).json()["status"] == "active"

    db.expire_all()
    reader = db.query(Reader).one()
    assert (reader.name, reader.locale) == ("Ada Reader", "en")
    pledges = {p.id: p for p in db.query(Pledge)}
    own_pledge, impostor_pledge = pledges[uuid.UUID(own["id"])], pledges[uuid.UUID(impostor["id"])]
    own_subscription = stripe_api.get(f"/v1/subscriptions/{own_pledge.stripe_subscription_id}")
    new_subscription = stripe_api.get(f"/v1/subscriptions/{impostor_pledge.stripe_subscription_id}")
    assert own_subscription.json()["default_payment_method"] == reader_card
    assert new_subscription.json()["default_payment_method"] == impostor_card
    customer = stripe_api.get(f"/v1/customers/{reader.stripe_customer_id}").json()
    assert customer["invoice_settings"]["default_payment_method"] != impostor_card
    assert customer["name"] == "Ada Reader"


def test_another_readers_saved_card_cannot_be_named_at_confirm(
    client: TestClient, browser_stripe: BrowserStripe
) -> None:
    victim_card = browser_stripe.create_payment_method(VISA)
    victim = client.post("/v1/pledges", json=body("victim@example.org")).json()
    confirm(client, victim["id"], victim_card)

    attacker = client.post("/v1/pledges", json=body("attacker@example.org")).json()
    response = confirm(client, attacker["id"], victim_card)

    assert response.status_code == 422
    assert "cannot be used" in response.json()["message"]


@pytest.mark.parametrize(
    "payment_method", ["", "card_123", "pm_" + "x" * 300, "pm_1; DROP TABLE pledges", 42]
)
def test_malformed_payment_method_ids_are_a_422_before_stripe(
    client: TestClient, db: Session, payment_method: Any
) -> None:
    created = client.post("/v1/pledges", json=body()).json()

    response = client.post(
        f"/v1/pledges/{created['id']}/confirm", json={"payment_method": payment_method}
    )

    assert response.status_code == 422
    assert db.get(Pledge, uuid.UUID(created["id"])).card_attempts == 0  # type: ignore[union-attr]
