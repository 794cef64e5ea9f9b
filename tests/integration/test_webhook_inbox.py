"""POST /webhooks/stripe: only signed events are stored, once each; bad input changes nothing."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session

from billing.db import reset_caches
from billing.models import Payment, StripeEvent
from billing.settings import get_settings
from tests.conftest import WEBHOOK_SECRET
from tests.stripe_events import (
    deliver,
    event,
    invoice,
    make_pledge,
    new_id,
    post_event,
    signed_headers,
    stored_event,
    subscription,
)
from webhooks import processing
from webhooks.errors import RetryLater
from webhooks.inbox import unprocessed_event_ids
from webhooks.routes import MAX_WEBHOOK_BYTES
from webhooks.signature import sign
from webhooks.tasks import process_event


def stored_count(db: Session) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(StripeEvent)) or 0)


def a_paid_invoice_event() -> dict[str, object]:
    return event("invoice.paid", invoice(new_id("in"), new_id("sub"), "cus_x"))


def now() -> int:
    return int(time.time())


# Each case turns a signed event body into what reaches the endpoint: (body, headers).
SIGNATURE_CASES = {
    "missing header": lambda body: (body, {}),
    "empty header": lambda body: (body, {"Stripe-Signature": ""}),
    "no v1 part": lambda body: (body, {"Stripe-Signature": f"t={now()}"}),
    "bad hex": lambda body: (body, {"Stripe-Signature": f"t={now()},v1=not-hex"}),
    "wrong secret": lambda body: (body, signed_headers(body, secret="whsec_someone_else")),
    # Well past the 300 s tolerance, so a slow request on a loaded machine cannot bring it back.
    "old timestamp": lambda body: (body, signed_headers(body, at=now() - 400)),
    "future timestamp": lambda body: (body, signed_headers(body, at=now() + 400)),
    "body modified after signing": lambda body: (
        body.replace(b"invoice.paid", b"invoice.void"),
        signed_headers(body),
    ),
    # A 400-digit timestamp once overflowed the tolerance check into a 500.
    "400-digit timestamp": lambda body: (
        body,
        {"Stripe-Signature": f"t={'9' * 400},v1={'ab' * 32}"},
    ),
    "negative timestamp": lambda body: (body, {"Stripe-Signature": f"t=-{now()},v1=ab"}),
    "non-ASCII digit timestamp": lambda body: (
        body,
        {"Stripe-Signature": "t=\u00b2,v1=ab".encode("latin-1")},
    ),
    "timestamp with a fraction": lambda body: (body, {"Stripe-Signature": f"t={now()}.5,v1=ab"}),
    "non-ASCII signature": lambda body: (
        body,
        {"Stripe-Signature": f"t={now()},v1=\u00e9\u00e9".encode("latin-1")},
    ),
    "no equals signs": lambda body: (body, {"Stripe-Signature": "garbage,,,;;"}),
}


@pytest.mark.parametrize("case", SIGNATURE_CASES)
def test_bad_signature_is_refused_and_nothing_is_stored(
    client: TestClient, db: Session, case: str
) -> None:
    body, headers = SIGNATURE_CASES[case](orjson.dumps(a_paid_invoice_event()))

    response = client.post("/webhooks/stripe", content=body, headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["message"]
    assert stored_count(db) == 0


def test_signature_just_inside_the_tolerance_is_accepted(client: TestClient, db: Session) -> None:
    body = orjson.dumps(a_paid_invoice_event())

    response = client.post(
        "/webhooks/stripe", content=body, headers=signed_headers(body, at=int(time.time()) - 290)
    )

    assert response.status_code == 200
    assert stored_count(db) == 1


@pytest.fixture
def rotating_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    next_secret = "whsec_next_one_" + "n" * 32
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{WEBHOOK_SECRET},{next_secret}")
    reset_caches()
    yield next_secret
    monkeypatch.undo()
    reset_caches()


def test_both_secrets_verify_during_a_rotation(
    rotating_secrets: str, client: TestClient, db: Session
) -> None:
    old, new = a_paid_invoice_event(), a_paid_invoice_event()
    old_body, new_body = orjson.dumps(old), orjson.dumps(new)

    by_old = client.post("/webhooks/stripe", content=old_body, headers=signed_headers(old_body))
    by_new = client.post(
        "/webhooks/stripe", content=new_body, headers=signed_headers(new_body, rotating_secrets)
    )

    assert (by_old.status_code, by_new.status_code) == (200, 200)
    assert stored_count(db) == 2


def test_header_with_one_signature_per_secret_is_accepted(client: TestClient, db: Session) -> None:
    body = orjson.dumps(a_paid_invoice_event())
    now = int(time.time())
    wrong = sign(body, "whsec_retired", now).split(",")[1]
    header = f"{sign(body, WEBHOOK_SECRET, now)},{wrong}"

    response = client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})

    assert response.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"type": "invoice.paid"}',
        b'{"id": "evt_1", "type": "x"}',
        b'{"id": "evt_1", "type": "x", "created": 1, "data": {}}',
        orjson.dumps({"id": "e" * 256, "type": "x", "created": 1, "data": {"object": {}}}),
        orjson.dumps(
            {
                "id": "evt_1",
                "type": "x",
                "created": 1,
                "data": {"object": {}},
                "api_version": "v" * 65,
            }
        ),
    ],
    ids=["malformed", "array", "no id", "no created", "no object", "long id", "long version"],
)
def test_signed_body_that_is_not_an_event_is_refused(
    client: TestClient, db: Session, body: bytes
) -> None:
    response = client.post("/webhooks/stripe", content=body, headers=signed_headers(body))

    assert response.status_code == 400
    assert stored_count(db) == 0


def padded_event(size: int) -> bytes:
    """A genuine event whose JSON body is exactly `size` bytes (Stripe's big invoices)."""
    document = a_paid_invoice_event()
    document["padding"] = ""
    document["padding"] = "x" * (size - len(orjson.dumps(document)))
    body = orjson.dumps(document)
    assert len(body) == size
    return body


@pytest.mark.parametrize("size", [128 * 1024, MAX_WEBHOOK_BYTES])
def test_signed_event_over_the_api_limit_up_to_1_mib_is_stored(
    client: TestClient, db: Session, size: int
) -> None:
    body = padded_event(size)

    response = client.post("/webhooks/stripe", content=body, headers=signed_headers(body))

    assert response.status_code == 200, response.text
    assert stored_count(db) == 1


def test_webhook_body_over_1_mib_is_refused_with_413(client: TestClient, db: Session) -> None:
    body = padded_event(MAX_WEBHOOK_BYTES + 1)

    response = client.post("/webhooks/stripe", content=body, headers=signed_headers(body))

    assert response.status_code == 413
    assert stored_count(db) == 0


def test_chunked_webhook_body_over_1_mib_is_refused_with_413(
    client: TestClient, db: Session
) -> None:
    body = padded_event(MAX_WEBHOOK_BYTES + 1)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = client.post("/webhooks/stripe", content=chunks(), headers=signed_headers(body))

    assert response.status_code == 413
    assert stored_count(db) == 0


def test_other_routes_keep_max_request_bytes(client: TestClient, db: Session) -> None:
    response = client.post(
        "/v1/pledges",
        content=b"{" + b" " * (128 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413


def test_live_event_at_a_test_deployment_is_stored_as_ignored(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    live = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"), livemode=True)

    response = post_event(client, live)
    processing.process(stored_event(db, live["id"]).id)

    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert stored_event(db, live["id"]).status == "ignored"
    assert db.scalar(select(func.count()).select_from(Payment)) == 0


def test_duplicate_of_a_handled_event_is_a_2xx_no_op(client: TestClient, db: Session) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    paid = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"))
    first = deliver(client, db, paid)

    again = post_event(client, paid)

    assert again.status_code == 200
    assert again.json() == {"received": True, "status": "handled", "duplicate": True}
    row = stored_event(db, paid["id"])
    assert (row.id, row.status, row.attempts, row.handled_at) == (
        first.id, "handled", 1, first.handled_at,
    )  # fmt: skip
    assert stored_count(db) == 1


def test_duplicate_of_a_failed_event_runs_it_again(client: TestClient, db: Session) -> None:
    sub_id = new_id("sub")
    paid = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"))
    post_event(client, paid)
    row_id = stored_event(db, paid["id"]).id
    with pytest.raises(RetryLater):
        processing.process(row_id)  # neither we nor Stripe know the subscription
    processing.record_error(row_id, "RetryLater: gave up", give_up_at=0)
    assert stored_event(db, paid["id"]).status == "failed"
    make_pledge(db, subscription_id=sub_id)  # now the ledger knows it

    again = post_event(client, paid)
    outcome = processing.process(row_id)

    assert again.json()["status"] == "pending"
    assert outcome.status == "handled"
    assert db.scalar(select(func.count()).select_from(Payment)) == 1


def test_event_the_ledger_rejects_stays_failed_with_its_reason(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    weekly = subscription(sub_id, "cus_x", interval="week")

    stored = deliver(client, db, event("customer.subscription.updated", weekly))

    assert stored.status == "failed"
    assert stored.last_error is not None and "bills every week" in stored.last_error


def test_retries_stop_at_the_limit_and_leave_the_event_failed(
    client: TestClient, db: Session
) -> None:
    orphan = event("invoice.paid", invoice(new_id("in"), new_id("sub"), "cus_x"))
    post_event(client, orphan)
    row_id = stored_event(db, orphan["id"]).id

    process_event.apply(args=[row_id])  # eager: each retry runs at once

    row = stored_event(db, orphan["id"])
    assert row.status == "failed"
    assert row.attempts == get_settings().webhook_max_attempts
    assert row.last_error is not None and "not in Stripe yet" in row.last_error


def test_sweep_picks_events_whose_task_was_lost_and_leaves_the_rest(
    client: TestClient, db: Session
) -> None:
    documents = {name: a_paid_invoice_event() for name in ("lost", "retrying", "stuck", "done")}
    for document in documents.values():
        post_event(client, document)
    now = datetime.now(UTC)
    ages = {"lost": (0, 120), "retrying": (2, 120), "stuck": (2, 86_400), "done": (1, 86_400)}
    for name, (attempts, age) in ages.items():
        db.execute(
            sa_update(StripeEvent)
            .where(StripeEvent.stripe_event_id == documents[name]["id"])
            .values(attempts=attempts, received_at=now - timedelta(seconds=age))
        )
    db.execute(
        sa_update(StripeEvent)
        .where(StripeEvent.stripe_event_id == documents["done"]["id"])
        .values(status="handled")
    )
    db.commit()

    swept = unprocessed_event_ids(db, timedelta(seconds=60), timedelta(hours=2))

    expected = [stored_event(db, documents[name]["id"]).id for name in ("lost", "stuck")]
    assert swept == expected


def test_event_the_database_refuses_does_not_fail_events_stored_with_it(
    client: TestClient, db: Session
) -> None:
    refused = a_paid_invoice_event()
    refused["data"]["object"]["description"] = "\u0000"  # valid JSON, not storable as jsonb
    good = [a_paid_invoice_event() for _ in range(4)]

    def status_of(document: dict[str, object]) -> int:
        try:
            return post_event(client, document).status_code
        except Exception:  # the test client re-raises the server's error
            return 500

    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(status_of, [refused, *good]))

    assert statuses == [500, 200, 200, 200, 200]
    assert stored_count(db) == 4
