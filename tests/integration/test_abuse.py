"""Card testers against the pledge routes: limits, honeypot, captcha, origins, repeated declines."""

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.db import reset_caches
from billing.models import Pledge, Reader
from tests.conftest import BrowserStripe, free_port

VISA = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"


def body(email: str = "reader@example.org", **overrides: Any) -> dict[str, Any]:
    return {"email": email, "amount": 500, "currency": "eur", **overrides}


def count(db: Session, model: type[Any]) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def app_with(db: Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TestClient]]:
    """A client on an app built with extra settings, e.g. app_with(RATE_LIMIT_PER_IP="2/hour")."""
    clients: list[TestClient] = []

    def build(**env: str) -> TestClient:
        from billing.app import create_app

        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reset_caches()
        client = TestClient(create_app())
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
    monkeypatch.undo()
    reset_caches()


def test_filled_honeypot_is_refused_and_creates_nothing(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    customers_before = len(stripe_api.get("/v1/customers", params={"limit": 100}).json()["data"])

    response = client.post("/v1/pledges", json=body(website="http://spam.example"))

    assert response.status_code == 400
    assert "could not take this pledge" in response.json()["message"]
    assert count(db, Pledge) == count(db, Reader) == 0
    customers_after = len(stripe_api.get("/v1/customers", params={"limit": 100}).json()["data"])
    assert customers_after == customers_before


def test_requests_over_the_per_ip_limit_get_429_and_create_nothing(
    app_with: Callable[..., TestClient], db: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    client = app_with(RATE_LIMIT_PER_IP="3/hour")

    statuses = [
        client.post("/v1/pledges", json=body(f"reader{n}@example.org")).status_code
        for n in range(5)
    ]

    assert statuses == [201, 201, 201, 429, 429]
    assert count(db, Pledge) == 3
    refused = client.post("/v1/pledges", json=body("new@example.org"))
    assert refused.json()["message"].startswith("Too many attempts. Please try again in")
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    assert any(
        entry.get("event") == "abuse_refused" and entry.get("scope") == "ip"
        and entry.get("limit") == "3 per 1 hour"
        for entry in logged
    )  # fmt: skip
    assert "new@example.org" not in json.dumps(logged)


def test_one_email_is_limited_whatever_its_case_while_others_go_through(
    app_with: Callable[..., TestClient], db: Session
) -> None:
    client = app_with(RATE_LIMIT_PER_EMAIL="2/hour")

    first = client.post("/v1/pledges", json=body("Same@Example.org"))
    second = client.post("/v1/pledges", json=body("same@example.org"))
    third = client.post("/v1/pledges", json=body("SAME@example.org"))
    other = client.post("/v1/pledges", json=body("other@example.org"))

    assert [first.status_code, second.status_code, third.status_code] == [201, 201, 429]
    assert other.status_code == 201
    assert count(db, Pledge) == 3


def test_one_card_is_limited_across_emails_before_it_is_charged(
    app_with: Callable[..., TestClient],
    browser_stripe: BrowserStripe,
    stripe_api: httpx.Client,
    db: Session,
) -> None:
    client = app_with(RATE_LIMIT_PER_CARD="2/hour")
    statuses = []
    for n in range(3):
        created = client.post("/v1/pledges", json=body(f"card{n}@example.org")).json()
        card = {"payment_method": browser_stripe.create_payment_method(VISA)}
        statuses.append(client.post(f"/v1/pledges/{created['id']}/confirm", json=card).status_code)

    assert statuses == [200, 200, 429]
    db.expire_all()
    assert sorted(p.status for p in db.scalars(select(Pledge))) == ["active", "active", "pending"]
    last = db.scalars(select(Pledge).where(Pledge.status == "pending")).one()
    assert (
        stripe_api.get("/v1/subscriptions", params={"customer": last.stripe_customer_id}).json()[
            "data"
        ]
        == []
    )


def test_card_testing_script_is_refused_after_a_few_declines(
    app_with: Callable[..., TestClient], browser_stripe: BrowserStripe, db: Session
) -> None:
    client = app_with(DECLINE_LIMIT="2/hour", RATE_LIMIT_PER_IP="100/hour")
    outcomes = []
    for n in range(6):
        created = client.post("/v1/pledges", json=body(f"tester{n}@example.org"))
        if created.status_code != 201:
            outcomes.append(created.status_code)
            continue
        card = {"payment_method": browser_stripe.create_payment_method(DECLINED_ON_CHARGE)}
        confirmed = client.post(f"/v1/pledges/{created.json()['id']}/confirm", json=card)
        outcomes.append(confirmed.json().get("status", confirmed.status_code))

    assert outcomes == ["failed", "failed", 429, 429, 429, 429]
    refused = client.post("/v1/pledges", json=body("tester9@example.org"))
    assert refused.json()["message"].startswith("Too many declined cards")
    assert count(db, Pledge) == 2


@pytest.mark.parametrize(
    ("origin", "expected"),
    [("https://news.example", 201), (None, 201), ("https://evil.example", 403)],
)
def test_only_widget_origins_may_create_pledges(
    client: TestClient, db: Session, origin: str | None, expected: int
) -> None:
    headers = {"Origin": origin} if origin else {}

    response = client.post("/v1/pledges", json=body(), headers=headers)

    assert response.status_code == expected
    assert count(db, Pledge) == (1 if expected == 201 else 0)
    if origin == "https://evil.example":
        assert response.json()["message"] == "This site is not allowed to take pledges."


def test_cors_preflight_answers_only_widget_origins(client: TestClient) -> None:
    def preflight(origin: str) -> httpx.Response:
        return client.options(
            "/v1/pledges",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,idempotency-key,captcha-token",
            },
        )

    allowed = preflight("https://news.example")
    refused = preflight("https://evil.example")

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://news.example"
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


class FakeSiteverify:
    """Turnstile's siteverify on 127.0.0.1: vouches for one token, records what it was asked."""

    def __init__(self, good_token: str, secret: str) -> None:
        self.requests: list[dict[str, list[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                form = parse_qs(self.rfile.read(length).decode())
                fake.requests.append(form)
                ok = form.get("response") == [good_token] and form.get("secret") == [secret]
                answer = {"success": ok, "error-codes": [] if ok else ["invalid-input-response"]}
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.url = f"http://127.0.0.1:{self.port}/siteverify"


@contextmanager
def siteverify(good_token: str, secret: str) -> Iterator[FakeSiteverify]:
    fake = FakeSiteverify(good_token, secret)
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_captcha_is_verified_server_side_when_configured(
    app_with: Callable[..., TestClient], db: Session
) -> None:
    with siteverify("good-token", "captcha-secret") as fake:
        client = app_with(
            CAPTCHA_PROVIDER="turnstile",
            CAPTCHA_SITE_KEY="site-key",
            CAPTCHA_SECRET="captcha-secret",
            CAPTCHA_VERIFY_URL=fake.url,
        )
        config = client.get("/v1/widget/config").json()
        missing = client.post("/v1/pledges", json=body("a@example.org"))
        wrong = client.post(
            "/v1/pledges", json=body("b@example.org"), headers={"Captcha-Token": "forged"}
        )
        good = client.post(
            "/v1/pledges", json=body("c@example.org"), headers={"Captcha-Token": "good-token"}
        )

    assert config["captcha"] == {"provider": "turnstile", "site_key": "site-key"}
    assert missing.status_code == wrong.status_code == 400
    assert missing.json()["message"] == "Please complete the verification and try again."
    assert good.status_code == 201
    assert count(db, Pledge) == 1
    assert len(fake.requests) == 2  # no token, no call
    assert fake.requests[-1]["remoteip"] == ["testclient"]


def test_captcha_provider_unreachable_is_a_503_and_creates_nothing(
    app_with: Callable[..., TestClient], db: Session
) -> None:
    client = app_with(
        CAPTCHA_PROVIDER="hcaptcha",
        CAPTCHA_SITE_KEY="site-key",
        CAPTCHA_SECRET="captcha-secret",
        CAPTCHA_VERIFY_URL=f"http://127.0.0.1:{free_port()}/siteverify",
    )

    response = client.post("/v1/pledges", json=body(), headers={"Captcha-Token": "t"})

    assert response.status_code == 503
    assert count(db, Pledge) == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_PER_IP", "lots"),
        ("DECLINE_LIMIT", "3 per fortnight"),
        ("CAPTCHA_PROVIDER", "x"),
    ],
)
def test_bad_abuse_settings_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, test_environment: dict[str, str], name: str, value: str
) -> None:
    from pydantic import ValidationError

    from billing.settings import Settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
