"""Outgoing webhooks in one process: endpoints managed by admins, events written with each
ledger change, signed deliveries to a real local receiver, refusals that send nothing."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing.cli import app
from billing.endpoints import events as outgoing
from billing.endpoints.service import add_endpoint, rotate_secret
from billing.manage.data_rights import erase_reader
from billing.models import EmailOutbox, OutgoingEvent, Pledge, WebhookDelivery, WebhookEndpoint
from billing.settings import get_settings
from tests.integration.test_webhook_handlers import charge_paid_pledge, refund_object
from tests.ledger_rows import make_pledge, make_reader
from tests.outgoing_receiver import Receiver, running
from tests.reports_ledger import api_key
from tests.stripe_events import NOW, deliver, event, fixture, invoice, new_id, subscription
from workers.outgoing import attempt_delivery

runner = CliRunner()


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local receiver is on loopback: these tests allow private targets explicitly."""
    monkeypatch.setenv("OUTGOING_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running(Receiver()) as started:
        yield started


def event_types(db: Session) -> list[str]:
    db.expire_all()
    return list(db.scalars(select(OutgoingEvent.type).order_by(OutgoingEvent.id)))


def deliver_all(db: Session) -> list[str]:
    """Run every unfinished delivery once, oldest first, as the worker would."""
    db.expire_all()
    ids = db.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == "pending")
        .order_by(WebhookDelivery.id)
    ).all()
    db.commit()
    return [attempt_delivery(delivery_id).outcome for delivery_id in ids]


def test_cli_adds_an_endpoint_and_prints_the_secret_once_alone_on_the_last_line(
    db: Session, allow_private: None, receiver: Receiver
) -> None:
    added = runner.invoke(app, ["endpoints", "add", receiver.url, "--events", "pledge.*,payment.*"])
    assert added.exit_code == 0, added.output
    secret = added.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and secret not in added.output.strip().splitlines()[0]

    listed = runner.invoke(app, ["endpoints", "list"])
    assert receiver.url in listed.output and "pledge.*,payment.*" in listed.output
    assert secret not in listed.output
    endpoint_id = db.scalars(select(WebhookEndpoint.id)).one()

    rotated = runner.invoke(app, ["endpoints", "rotate-secret", str(endpoint_id)])
    new = rotated.output.strip().splitlines()[-1]
    assert rotated.exit_code == 0 and new.startswith("whsec_") and new != secret
    assert runner.invoke(app, ["endpoints", "disable", str(endpoint_id)]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["endpoints", "list"]).output
    assert runner.invoke(app, ["endpoints", "remove", str(endpoint_id)]).exit_code == 0
    assert runner.invoke(app, ["endpoints", "list"]).output.strip() == "no endpoints"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_endpoint_is_refused_at_add_and_at_delivery_and_receives_nothing(
    db: Session, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    url = f"http://{host}:{receiver.port}/hooks"
    refused = runner.invoke(app, ["endpoints", "add", url, "--events", "*"])
    assert refused.exit_code == 1 and "not a public address" in refused.output

    # Stored while private targets were allowed, then the setting is back to its default.
    monkeypatch.setenv("OUTGOING_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    add_endpoint(db, get_settings(), url=url, event_types="*")
    monkeypatch.delenv("OUTGOING_WEBHOOK_ALLOW_PRIVATE")
    get_settings.cache_clear()
    outgoing.reader_updated(db, reader=make_reader(db), changed=["email"])
    db.commit()

    assert deliver_all(db) == ["failed"]
    assert receiver.count() == 0
    db.expire_all()
    delivery = db.scalars(select(WebhookDelivery)).one()
    assert "not a public address" in (delivery.last_error or "")
    assert db.scalars(select(WebhookEndpoint.status)).one() == "disabled"


def test_api_manages_endpoints_with_an_admin_key_only(
    client: TestClient, db: Session, allow_private: None, receiver: Receiver
) -> None:
    body = {"url": receiver.url, "events": ["payment.*"], "personal_data": True}
    assert client.post("/v1/endpoints", json=body).status_code == 401
    finance = {"Authorization": f"Bearer {api_key(db, 'finance')}"}
    assert client.post("/v1/endpoints", json=body, headers=finance).status_code == 403
    assert client.get("/v1/endpoints", headers=finance).status_code == 403
    admin = {"Authorization": f"Bearer {api_key(db, 'admin')}"}

    created = client.post("/v1/endpoints", json=body, headers=admin)
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["personal_data"] is True
    listed = client.get("/v1/endpoints", headers=admin).json()["items"]
    assert [item["id"] for item in listed] == [endpoint["id"]] and "secret" not in listed[0]
    bad = client.post("/v1/endpoints", json={**body, "events": ["nope"]}, headers=admin)
    assert bad.status_code == 422 and "matches no event" in bad.json()["message"]

    path = f"/v1/endpoints/{endpoint['id']}"
    rotated = client.post(f"{path}/rotate-secret", headers=admin).json()
    assert rotated["secret"] != endpoint["secret"] and rotated["secret_rotated_until"]
    assert client.post(f"{path}/disable", headers=admin).json()["status"] == "disabled"
    assert client.post(f"{path}/enable", headers=admin).json()["status"] == "enabled"
    assert client.get(f"{path}/deliveries", headers=admin).json() == {"items": []}
    assert client.delete(path, headers=admin).status_code == 204
    assert client.get(path, headers=admin).status_code == 404


def test_ledger_changes_from_stripe_become_events_in_order(client: TestClient, db: Session) -> None:
    payment, charge_id = charge_paid_pledge(client, db)
    pledge = db.get_one(Pledge, payment.pledge_id)
    pledge_id, subscription_id = str(pledge.id), pledge.stripe_subscription_id or ""
    failed = invoice(new_id("in"), subscription_id, "cus_x", status="open")
    deliver(client, db, event("invoice.payment_failed", failed, created=NOW + 10))
    deliver(client, db, event("invoice.paid", {**failed, "status": "paid"}, created=NOW + 20))
    bigger = subscription(subscription_id, "cus_x", amount=900)
    deliver(client, db, event("customer.subscription.updated", bigger, created=NOW + 30))
    deliver(client, db, event("refund.created", refund_object(charge_id, 200)))
    dispute = fixture(
        "dispute", id=new_id("dp"), charge=charge_id, amount=500, currency="eur",
        status="needs_response",
    )  # fmt: skip
    deliver(client, db, event("charge.dispute.created", dispute, created=NOW + 40))
    canceled = subscription(subscription_id, "cus_x", amount=900, status="canceled")
    deliver(client, db, event("customer.subscription.deleted", canceled, created=NOW + 50))

    assert event_types(db) == [
        "payment.succeeded",
        "payment.failed", "pledge.past_due",
        "payment.succeeded", "pledge.activated",
        "pledge.amount_changed",
        "payment.refunded",
        "payment.disputed",
        "pledge.canceled",
    ]  # fmt: skip
    rows = db.scalars(select(OutgoingEvent).order_by(OutgoingEvent.id)).all()
    assert len({row.event_id for row in rows}) == len(rows)
    refunded = rows[6].data["payment"]
    assert (refunded["refund_amount"], refunded["refunded_amount"]) == (200, 200)
    assert rows[5].data["pledge"]["total_amount"] == 900
    assert rows[5].data["pledge"]["previous_total_amount"] == 500
    assert all(row.data["reader"].keys() == {"id"} for row in rows)
    assert all(row.data.get("pledge", {}).get("id", pledge_id) == pledge_id for row in rows)


class ErasingGateway:
    """Stripe as erasure uses it: cancel the subscription, delete the customer."""

    def cancel_subscription(self, _subscription_id: str) -> None:
        pass

    def delete_customer(self, _customer_id: str) -> None:
        pass


def test_erasure_sends_canceled_and_erased_without_personal_data_even_when_allowed(
    db: Session, allow_private: None, receiver: Receiver
) -> None:
    added = add_endpoint(db, get_settings(), url=receiver.url, event_types="*", personal_data=True)
    reader = make_reader(db, email="grace@example.org", name="Grace")
    make_pledge(db, reader)
    outgoing.reader_updated(db, reader=reader, changed=["email"])
    db.commit()
    assert deliver_all(db) == ["delivered"]
    assert receiver.requests[0].verify(added.secret)["data"]["reader"] == {
        "id": str(reader.id), "changed": ["email"], "email": "grace@example.org", "name": "Grace",
    }  # fmt: skip

    erase_reader(db, ErasingGateway(), reader)  # type: ignore[arg-type]
    db.commit()
    assert deliver_all(db) == ["delivered", "delivered"]

    canceled, erased = (request.verify(added.secret) for request in receiver.requests[1:])
    assert (canceled["type"], erased["type"]) == ("pledge.canceled", "reader.erased")
    assert erased["data"] == {"reader": {"id": str(reader.id)}}
    for request in receiver.requests[1:]:
        assert b"grace" not in request.body.lower()


def test_endpoint_without_personal_data_gets_ids_only_and_only_its_events(
    db: Session, allow_private: None, receiver: Receiver
) -> None:
    added = add_endpoint(db, get_settings(), url=receiver.url, event_types="payment.*")
    reader = make_reader(db)
    outgoing.reader_updated(db, reader=reader, changed=["email"])  # not subscribed
    payment = {"id": 1, "amount": 500, "currency": "eur"}
    data = {"payment": payment, "reader": {"id": str(reader.id)}}
    outgoing.record(db, event_type="payment.failed", reader_id=reader.id, data=data)
    db.commit()

    assert deliver_all(db) == ["delivered"]
    sent = receiver.requests[0]
    payload: dict[str, Any] = sent.verify(added.secret)
    assert payload["type"] == "payment.failed" and payload["version"] == 1
    assert payload["data"]["reader"] == {"id": str(reader.id)}
    assert sent.headers["webhook-id"] == payload["id"]


def test_rotation_signs_with_both_secrets_during_the_overlap(
    db: Session, allow_private: None, receiver: Receiver
) -> None:
    added = add_endpoint(db, get_settings(), url=receiver.url, event_types="*")
    old_secret = added.secret
    new_secret = rotate_secret(db, get_settings(), endpoint_id=added.endpoint.id).secret
    reader = make_reader(db)
    outgoing.reader_updated(db, reader=reader, changed=["email"])
    db.commit()
    assert deliver_all(db) == ["delivered"]
    during = receiver.requests[0]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    during.verify(old_secret), during.verify(new_secret)

    db.execute(
        update(WebhookEndpoint).values(
            previous_secret_expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
    )
    outgoing.reader_updated(db, reader=reader, changed=["email"])
    db.commit()
    assert deliver_all(db) == ["delivered"]
    after = receiver.requests[1]
    after.verify(new_secret)
    with pytest.raises(Exception, match="No matching signature"):
        after.verify(old_secret)


def test_a_failing_endpoint_is_retried_then_disabled_and_the_admins_are_mailed(
    db: Session, allow_private: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTGOING_WEBHOOK_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("OUTGOING_WEBHOOK_RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("ADMIN_EMAILS", "ops@news.example,cto@news.example")
    get_settings.cache_clear()
    with running(Receiver(status_for=lambda _n, _event: 500)) as failing:
        added = add_endpoint(db, get_settings(), url=failing.url, event_types="*")
        outgoing.reader_updated(db, reader=make_reader(db), changed=["email"])
        db.commit()
        delivery_id = db.scalars(select(WebhookDelivery.id)).one()
        outcomes = []
        for _ in range(3):
            outcomes.append(attempt_delivery(delivery_id).outcome)
            db.execute(update(WebhookDelivery).values(next_attempt_at=datetime.now(UTC)))
            db.commit()
        assert outcomes == ["retry", "retry", "failed"]
        assert failing.count() == 3

    db.expire_all()
    delivery = db.get_one(WebhookDelivery, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 500)
    assert delivery.last_response == "receiver says no" and delivery.last_duration_ms is not None
    endpoint = db.get_one(WebhookEndpoint, added.endpoint.id)
    assert endpoint.status == "disabled" and "HTTP 500" in (endpoint.disabled_reason or "")
    mails = db.scalars(select(EmailOutbox).order_by(EmailOutbox.to_email)).all()
    assert [(m.template, m.to_email) for m in mails] == [
        ("endpoint_disabled", "cto@news.example"), ("endpoint_disabled", "ops@news.example"),
    ]  # fmt: skip
    assert added.secret not in str(mails[0].context)


def test_deliveries_log_and_replay_since_a_moment(
    db: Session, allow_private: None, receiver: Receiver
) -> None:
    added = add_endpoint(db, get_settings(), url=receiver.url, event_types="*")
    endpoint_id = str(added.endpoint.id)
    reader = make_reader(db)
    before = datetime.now(UTC)
    outgoing.reader_updated(db, reader=reader, changed=["email"])
    outgoing.reader_updated(db, reader=reader, changed=["name"])
    db.commit()
    assert deliver_all(db) == ["delivered", "delivered"]

    log = runner.invoke(app, ["endpoints", "deliveries", endpoint_id])
    lines = log.output.strip().splitlines()
    assert len(lines) == 2 and all("succeeded" in line and "\t204\t" in line for line in lines)

    replayed = runner.invoke(
        app, ["endpoints", "replay", endpoint_id, "--since", before.isoformat()]
    )
    assert replayed.exit_code == 0 and "queued 2 event(s)" in replayed.output
    assert deliver_all(db) == ["delivered", "delivered"]
    first_ids = [request.headers["webhook-id"] for request in receiver.requests]
    assert first_ids[:2] == first_ids[2:]
    assert (
        len(runner.invoke(app, ["endpoints", "deliveries", endpoint_id]).output.splitlines()) == 4
    )


def test_the_dashboard_shows_endpoints_to_admins_only(
    client: TestClient, db: Session, allow_private: None, receiver: Receiver
) -> None:
    add_endpoint(db, get_settings(), url=receiver.url, event_types="*")
    outgoing.reader_updated(db, reader=make_reader(db), changed=["email"])
    db.commit()
    assert deliver_all(db) == ["delivered"]

    for role, shown in (("finance", False), ("admin", True)):
        client.cookies.clear()
        signed_in = client.post(
            "/reports/dashboard/session", data={"api_key": api_key(db, role)},
            follow_redirects=False,
        )  # fmt: skip
        assert signed_in.status_code == 303
        page = client.get("/reports/dashboard").text
        assert ('id="endpoints"' in page) is shown
        assert (receiver.url in page) is shown
