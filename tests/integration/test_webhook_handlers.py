"""Each handled event type, built from Stripe's fixtures, lands in the ledger as it should."""

from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from billing.models import Dispute, EmailOutbox, Payment, Pledge, Reader, Refund
from tests.stripe_events import (
    DAY,
    NOW,
    deliver,
    event,
    fixture,
    invoice,
    make_pledge,
    new_id,
    subscription,
)


def emails(db: Session) -> list[tuple[str, str]]:
    db.expire_all()
    return [(row.template, row.dedupe_key) for row in db.scalars(select(EmailOutbox))]


def payments(db: Session) -> list[Payment]:
    db.expire_all()
    return list(db.scalars(select(Payment).order_by(Payment.id)))


def reload(db: Session, pledge: Pledge) -> Pledge:
    db.expire_all()
    fresh = db.get(Pledge, pledge.id)
    assert fresh is not None
    return fresh


def paid_pledge(client: TestClient, db: Session, amount: int = 500) -> tuple[Pledge, Payment, str]:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id, amount=amount)
    invoice_id = new_id("in")
    # Paid a month ago, so the news in each test is newer.
    paid = invoice(invoice_id, sub_id, "cus_x", amount=amount, period_start=NOW - 30 * DAY)
    deliver(client, db, event("invoice.paid", paid, created=NOW - 30 * DAY))
    return pledge, payments(db)[0], invoice_id


def test_invoice_paid_records_one_payment_with_amount_period_and_a_welcome_receipt(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id, status="pending", amount=750)
    paid = invoice(new_id("in"), sub_id, pledge.stripe_customer_id or "", amount=750)

    stored = deliver(client, db, event("invoice.paid", paid))

    assert stored.status == "handled" and stored.handled_at is not None
    [payment] = payments(db)
    assert (payment.status, payment.amount_minor, payment.currency) == ("paid", 750, "eur")
    assert payment.pledge_id == pledge.id and payment.stripe_subscription_id == sub_id
    assert payment.period_start == datetime.fromtimestamp(NOW, UTC)
    assert payment.period_end == datetime.fromtimestamp(NOW + 30 * DAY, UTC)
    assert payment.paid_at == datetime.fromtimestamp(NOW + 60, UTC)
    assert reload(db, pledge).status == "active"
    assert emails(db) == [("welcome_receipt", f"receipt:{paid['id']}")]


def test_invoice_paid_and_payment_succeeded_for_one_invoice_make_one_payment_one_receipt(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    paid = invoice(new_id("in"), sub_id, "cus_x")

    deliver(client, db, event("invoice.paid", paid))
    second = deliver(client, db, event("invoice.payment_succeeded", paid))

    assert second.status == "handled"
    assert len(payments(db)) == 1
    assert len(emails(db)) == 1


def test_second_invoice_gets_a_plain_receipt(client: TestClient, db: Session) -> None:
    pledge, _first, _ = paid_pledge(client, db)
    renewal = invoice(
        new_id("in"), pledge.stripe_subscription_id, "cus_x", period_start=NOW + 30 * DAY
    )

    deliver(client, db, event("invoice.paid", renewal))

    assert [template for template, _ in emails(db)] == ["welcome_receipt", "receipt"]
    assert reload(db, pledge).current_period_end == datetime.fromtimestamp(NOW + 60 * DAY, UTC)


def test_invoice_payment_failed_marks_pledge_past_due_and_queues_one_reminder(
    client: TestClient, db: Session
) -> None:
    pledge, _, _ = paid_pledge(client, db)
    failed = invoice(
        new_id("in"), pledge.stripe_subscription_id, "cus_x", status="open", attempt_count=2,
        next_payment_attempt=NOW + 3 * DAY, period_start=NOW + 30 * DAY,
    )  # fmt: skip

    deliver(client, db, event("invoice.payment_failed", failed))
    deliver(client, db, event("invoice.payment_failed", failed))  # Stripe's next attempt report

    payment = payments(db)[1]
    assert (payment.status, payment.attempt_count) == ("failed", 2)
    assert payment.next_attempt_at == datetime.fromtimestamp(NOW + 3 * DAY, UTC)
    assert reload(db, pledge).status == "past_due"
    assert emails(db)[1:] == [("payment_failed", f"reminder:{failed['id']}:1")]


def test_payment_action_required_asks_the_reader_to_act(client: TestClient, db: Session) -> None:
    pledge, _, _ = paid_pledge(client, db)
    needs_action = invoice(new_id("in"), pledge.stripe_subscription_id, "cus_x", status="open")

    deliver(client, db, event("invoice.payment_action_required", needs_action))

    assert payments(db)[1].failure_code == "authentication_required"
    assert reload(db, pledge).status == "past_due"
    assert emails(db)[1][0] == "update_card"


def test_failed_then_paid_invoice_recovers_the_pledge(client: TestClient, db: Session) -> None:
    pledge, _, _ = paid_pledge(client, db)
    renewal_id = new_id("in")
    sub_id = pledge.stripe_subscription_id
    failed = invoice(renewal_id, sub_id, "cus_x", status="open")
    deliver(client, db, event("invoice.payment_failed", failed, created=NOW + 10))

    deliver(
        client, db, event("invoice.paid", invoice(renewal_id, sub_id, "cus_x"), created=NOW + 20)
    )

    payment = payments(db)[1]
    assert (payment.status, payment.failure_code, payment.next_attempt_at) == ("paid", None, None)
    assert reload(db, pledge).status == "active"


def test_invoice_payment_paid_links_the_payment_intent_and_charge(
    client: TestClient, db: Session
) -> None:
    _pledge, payment, invoice_id = paid_pledge(client, db)
    invoice_payment = fixture(
        "invoice_payment", id=new_id("inpay"), invoice=invoice_id, amount_paid=500,
        currency="eur", status="paid", livemode=False,
        payment={"type": "payment_intent", "payment_intent": "pi_linked", "charge": None},
    )  # fmt: skip

    stored = deliver(client, db, event("invoice_payment.paid", invoice_payment))

    assert stored.status == "handled"
    [linked] = payments(db)
    assert linked.id == payment.id and linked.stripe_payment_intent_id == "pi_linked"


def test_fee_and_net_come_from_the_balance_transaction_of_the_intents_charge(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    customer = stripe_api.post("/v1/customers", data={"email": "fee@example.org"}).json()
    stripe_api.post("/v1/payment_methods/pm_card_visa/attach", data={"customer": customer["id"]})
    intent = stripe_api.post(
        "/v1/payment_intents",
        data={"amount": 500, "currency": "eur", "customer": customer["id"],
              "payment_method": "pm_card_visa", "confirm": "true", "off_session": "true"},
    ).json()  # fmt: skip
    assert intent["status"] == "succeeded"
    _pledge, _payment, invoice_id = paid_pledge(client, db)
    invoice_payment = fixture(
        "invoice_payment", id=new_id("inpay"), invoice=invoice_id, status="paid",
        payment={"type": "payment_intent", "payment_intent": intent["id"]},
    )  # fmt: skip

    deliver(client, db, event("invoice_payment.paid", invoice_payment))

    [settled] = payments(db)
    charge = intent["latest_charge"]  # localstripe expands it, Stripe sends the id
    assert settled.stripe_charge_id == (charge["id"] if isinstance(charge, dict) else charge)
    assert (settled.fee_minor, settled.net_minor) == (0, 500)


def test_subscription_events_follow_the_subscription_status(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id, status="pending")
    customer = pledge.stripe_customer_id or ""
    steps = [
        ("customer.subscription.created", "active", "active"),
        ("customer.subscription.paused", "paused", "paused"),
        ("customer.subscription.resumed", "active", "active"),
        ("customer.subscription.updated", "past_due", "past_due"),
        ("customer.subscription.deleted", "canceled", "canceled"),
    ]
    for offset, (kind, stripe_status, expected) in enumerate(steps):
        state = subscription(sub_id, customer, status=stripe_status)
        deliver(client, db, event(kind, state, created=NOW + offset))
        assert reload(db, pledge).status == expected, kind

    ended = reload(db, pledge)
    assert ended.canceled_at is not None and ended.activated_at is not None
    # Canceled while past due: "your support has ended", not a cancellation confirmation.
    assert emails(db) == [("support_ended", f"ended:{pledge.id}")]


def test_subscription_updated_with_a_new_amount_updates_the_pledge(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id, amount=500)

    deliver(
        client, db,
        event("customer.subscription.updated", subscription(sub_id, "cus_x", amount=1200)),
    )  # fmt: skip

    assert reload(db, pledge).charged_minor == 1200


def test_subscription_moved_to_yearly_billing_makes_a_yearly_pledge(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id, amount=500)
    yearly = subscription(sub_id, "cus_x", amount=5000, interval="year")

    deliver(client, db, event("customer.subscription.updated", yearly))

    changed = reload(db, pledge)
    assert (changed.interval, changed.charged_minor) == ("year", 5000)


def test_collection_paused_by_the_reader_pauses_the_pledge(client: TestClient, db: Session) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id)
    paused = subscription(sub_id, "cus_x")
    paused["pause_collection"] = {"behavior": "void", "resumes_at": None}

    deliver(client, db, event("customer.subscription.updated", paused, created=NOW))
    assert reload(db, pledge).status == "paused"

    resumed = subscription(sub_id, "cus_x")
    deliver(client, db, event("customer.subscription.updated", resumed, created=NOW + 60))
    assert reload(db, pledge).status == "active"


def test_canceled_pledge_stays_canceled_and_mails_once(client: TestClient, db: Session) -> None:
    sub_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=sub_id)
    canceled = subscription(sub_id, "cus_x", status="canceled")

    deliver(client, db, event("customer.subscription.deleted", canceled, created=NOW))
    deliver(client, db, event("customer.subscription.deleted", canceled, created=NOW + 5))
    deliver(
        client, db,
        event("customer.subscription.updated", subscription(sub_id, "cus_x"), created=NOW + 9),
    )  # fmt: skip

    assert reload(db, pledge).status == "canceled"
    assert emails(db) == [("cancellation", f"ended:{pledge.id}")]


def refund_object(charge_id: str, amount: int, **overrides: object) -> dict[str, object]:
    return fixture(
        "refund", id=new_id("re"), charge=charge_id, amount=amount, currency="eur", **overrides
    )


def charge_paid_pledge(client: TestClient, db: Session) -> tuple[Payment, str]:
    _pledge, payment, invoice_id = paid_pledge(client, db)
    charge_id = new_id("ch")
    invoice_payment = fixture(
        "invoice_payment", id=new_id("inpay"), invoice=invoice_id, status="paid",
        payment={"type": "payment_intent", "payment_intent": new_id("pi"), "charge": charge_id},
    )  # fmt: skip
    deliver(client, db, event("invoice_payment.paid", invoice_payment))
    return payment, charge_id


def test_partial_then_full_refund(client: TestClient, db: Session) -> None:
    _payment, charge_id = charge_paid_pledge(client, db)
    first, second = refund_object(charge_id, 200), refund_object(charge_id, 300)

    deliver(client, db, event("refund.created", first))
    assert (payments(db)[0].refunded_minor, payments(db)[0].status) == (200, "paid")

    charge = fixture(
        "charge", id=charge_id, amount=500, amount_refunded=500, currency="eur", refunded=True,
        refunds={"object": "list", "data": [first, second], "has_more": False},
    )  # fmt: skip
    deliver(client, db, event("charge.refunded", charge))

    refunded = payments(db)[0]
    assert (refunded.refunded_minor, refunded.status) == (500, "refunded")
    assert db.scalar(select(func.count()).select_from(Refund)) == 2
    assert sorted(key for _, key in emails(db) if key.startswith("refund:")) == sorted(
        [f"refund:{first['id']}", f"refund:{second['id']}"]
    )


def test_refund_updated_to_failed_gives_the_money_back_to_the_payment(
    client: TestClient, db: Session
) -> None:
    _payment, charge_id = charge_paid_pledge(client, db)
    refund = refund_object(charge_id, 500)
    deliver(client, db, event("refund.created", refund, created=NOW))

    deliver(client, db, event("refund.updated", {**refund, "status": "failed"}, created=NOW + 1))

    payment = payments(db)[0]
    assert (payment.refunded_minor, payment.status) == (0, "paid")


def test_dispute_opened_then_won_and_another_lost(client: TestClient, db: Session) -> None:
    _payment, charge_id = charge_paid_pledge(client, db)
    dispute = fixture(
        "dispute", id=new_id("dp"), charge=charge_id, amount=500, currency="eur",
        status="needs_response",
    )  # fmt: skip

    deliver(client, db, event("charge.dispute.created", dispute, created=NOW))
    opened = payments(db)[0]
    assert (opened.disputed_minor, opened.dispute_status) == (500, "needs_response")

    deliver(
        client, db, event("charge.dispute.closed", {**dispute, "status": "won"}, created=NOW + 5)
    )
    # A late "created" must not reopen it.
    deliver(client, db, event("charge.dispute.created", dispute, created=NOW + 1))
    won = payments(db)[0]
    assert (won.disputed_minor, won.dispute_status) == (0, "won")
    row = db.scalars(select(Dispute)).one()
    assert row.status == "won" and row.closed_at is not None


def test_lost_dispute_keeps_the_money_counted_as_disputed(client: TestClient, db: Session) -> None:
    _payment, charge_id = charge_paid_pledge(client, db)
    dispute = fixture("dispute", id=new_id("dp"), charge=charge_id, amount=500, currency="eur")

    deliver(client, db, event("charge.dispute.closed", {**dispute, "status": "lost"}))

    lost = payments(db)[0]
    assert (lost.disputed_minor, lost.dispute_status) == (500, "lost")


def test_customer_updated_moves_the_reader_to_the_new_email(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    customer = stripe_api.post("/v1/customers", data={"email": "old@example.org"}).json()
    pledge = make_pledge(db, customer_id=customer["id"], email="old@example.org")
    stripe_api.post(f"/v1/customers/{customer['id']}", data={"email": "New@Example.org"})
    updated = fixture("customer", id=customer["id"], email="New@Example.org")

    deliver(client, db, event("customer.updated", updated))

    db.expire_all()
    reader = db.get(Reader, pledge.reader_id)
    assert reader is not None and reader.email == "new@example.org"


def test_customer_updated_does_not_give_a_forgotten_reader_an_address_back(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    customer = stripe_api.post("/v1/customers", data={"email": "back@example.org"}).json()
    pledge = make_pledge(db, customer_id=customer["id"], email="erased-1@invalid")
    db.execute(update(Reader).values(erased_at=datetime.now(UTC)))
    db.commit()

    deliver(client, db, event("customer.updated", fixture("customer", id=customer["id"])))

    db.expire_all()
    reader = db.get(Reader, pledge.reader_id)
    assert reader is not None and reader.email == "erased-1@invalid"


def test_setup_intent_succeeded_links_the_widget_pledge(client: TestClient, db: Session) -> None:
    pledge = make_pledge(db, status="pending", interval="month")
    setup_intent = fixture(
        "setup_intent", id=new_id("seti"), status="succeeded",
        metadata={"pledge_id": str(pledge.id)}, client_secret=None,
    )  # fmt: skip

    stored = deliver(client, db, event("setup_intent.succeeded", setup_intent))

    assert stored.status == "handled"
    assert reload(db, pledge).stripe_setup_intent_id == setup_intent["id"]


def test_payment_intent_succeeded_records_a_gift_once(client: TestClient, db: Session) -> None:
    pledge = make_pledge(db, status="pending", interval="once", amount=2500)
    intent = fixture(
        "payment_intent", id=new_id("pi"), amount=2500, amount_received=2500, currency="eur",
        status="succeeded", metadata={"pledge_id": str(pledge.id)}, client_secret=None,
        last_payment_error=None, customer=pledge.stripe_customer_id,
    )  # fmt: skip

    deliver(client, db, event("payment_intent.succeeded", intent))
    deliver(client, db, event("payment_intent.succeeded", intent))

    [payment] = payments(db)
    assert (payment.status, payment.amount_minor, payment.stripe_payment_intent_id) == (
        "paid", 2500, intent["id"],
    )  # fmt: skip
    assert reload(db, pledge).status == "active"
    assert emails(db) == [("gift_receipt", f"receipt:{intent['id']}")]


@pytest.mark.parametrize(("cards_tried", "status"), [(1, "pending"), (3, "failed")])
def test_payment_intent_failed_fails_a_pending_gift_only_after_its_last_card(
    client: TestClient, db: Session, cards_tried: int, status: str
) -> None:
    pledge = make_pledge(db, status="pending", interval="once")
    pledge.card_attempts = cards_tried
    db.commit()
    intent = fixture(
        "payment_intent", id=new_id("pi"), amount=500, currency="eur",
        status="requires_payment_method", metadata={"pledge_id": str(pledge.id)},
        last_payment_error={"type": "card_error", "code": "card_declined",
                            "decline_code": "insufficient_funds", "message": "Declined"},
    )  # fmt: skip

    deliver(client, db, event("payment_intent.payment_failed", intent))

    [payment] = payments(db)
    assert (payment.status, payment.failure_code) == ("failed", "insufficient_funds")
    assert reload(db, pledge).status == status


def test_payment_intent_of_an_invoice_is_left_to_the_invoice_events(
    client: TestClient, db: Session
) -> None:
    intent = fixture("payment_intent", id=new_id("pi"), status="succeeded", metadata={})

    stored = deliver(client, db, event("payment_intent.succeeded", intent))

    assert stored.status == "handled" and payments(db) == []


def test_unknown_event_type_is_stored_and_ignored(client: TestClient, db: Session) -> None:
    stored = deliver(client, db, fixture("event", id=new_id("evt"), created=NOW))

    assert (stored.type, stored.status) == ("plan.created", "ignored")
