"""Erasure leaves a reader's email and name nowhere in the database, even in events that arrive
after it: every text and JSON column of every table is searched."""

import contextlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing import notifications
from billing.cli import app as cli
from billing.models import EmailOutbox, Pledge, Reader, StripeEvent
from billing.outbox import queue_email
from billing.reader_links import manage_link, manage_token
from tests.conftest import BrowserStripe, CaughtMail
from tests.integration.test_manage import active_pledge
from tests.integration.test_reader_emails import deliver_pending
from tests.ledger_rows import make_payment
from tests.stripe_events import event, fixture, invoice, new_id, post_event
from webhooks import processing

EMAIL = "ada.erasure@example.org"
OLD_EMAIL = "ada.before@example.org"
NAME = "Ada Erasmina"
ARTICLE = "https://news.example/2026/11/the-story-ada-read"
TEXT_TYPES = ("text", "character varying", "json", "jsonb")


def places_holding(db: Session, needle: str) -> list[str]:
    """Every table.column (any text or JSON type) whose value contains `needle`, any case."""
    db.expire_all()
    columns = db.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = ANY(:types)"
        ),
        {"types": list(TEXT_TYPES)},
    ).all()
    assert ("stripe_events", "payload") in {tuple(c) for c in columns}
    found = []
    for table, column in columns:
        hits = db.scalar(
            text(f'SELECT count(*) FROM "{table}" WHERE strpos(lower("{column}"::text), :n) > 0'),
            {"n": needle.lower()},
        )
        if hits:
            found.append(f"{table}.{column}")
    return found


def customer(customer_id: str, email: str = EMAIL, name: str = NAME) -> dict[str, Any]:
    return fixture(
        "customer", id=customer_id, email=email, name=name,
        description=f"{name} <{email}>", metadata={"note": f"pledged as {email}"},
    )  # fmt: skip


def personal_invoice(customer_id: str, subscription_id: str | None) -> dict[str, Any]:
    document = invoice(new_id("in"), subscription_id, customer_id)
    document.update(customer_email=email_variant(), customer_name=NAME)
    return document


def email_variant() -> str:
    # Stripe keeps the address as the reader typed it; erasure must not depend on its case.
    return EMAIL.replace("ada", "Ada")


def charge(customer_id: str) -> dict[str, Any]:
    document = fixture("charge", id=new_id("ch"), customer=customer_id, receipt_email=EMAIL)
    document["billing_details"] = {"email": EMAIL, "name": NAME, "address": None, "phone": None}
    return document


@pytest.fixture(params=["manage link", "pledges reader erase"])
def erased_reader(
    request: pytest.FixtureRequest,
    client: TestClient,
    db: Session,
    browser_stripe: BrowserStripe,
    smtp_server: CaughtMail,
) -> Pledge:
    """A reader with a pledge, stored events naming them, mails sent and waiting, then erased."""
    pledge = active_pledge(client, browser_stripe, email=EMAIL, article_url=ARTICLE)
    reader = db.get(Reader, pledge.reader_id)
    assert reader is not None and reader.name == "Ada Reader"
    reader.name = NAME
    customer_id = pledge.stripe_customer_id
    assert customer_id is not None
    # Before they changed address at Stripe: a mail to the old one, with a live manage link.
    queue_email(
        db, dedupe_key=f"old-address:{pledge.id}", template="manage_link", to_email=OLD_EMAIL,
        context={"links": [manage_link(pledge.id)]}, pledge_id=pledge.id,
    )  # fmt: skip
    db.commit()
    client.post("/manage/link", data={"email": EMAIL})
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)
    assert "sent" in deliver_pending(db)
    changed = event("customer.updated", customer(customer_id))
    changed["data"]["previous_attributes"] = {"email": OLD_EMAIL}
    for document in (
        changed,
        event("invoice.paid", personal_invoice(customer_id, pledge.stripe_subscription_id)),
        event("charge.succeeded", charge(customer_id)),
    ):
        assert post_event(client, document).status_code == 200
    assert places_holding(db, EMAIL) and places_holding(db, NAME)

    if request.param == "manage link":
        erased = client.post(f"/manage/{manage_token(pledge.id)}/erase", data={"confirm": "erase"})
        assert erased.status_code == 200
    else:
        result = CliRunner().invoke(cli, ["reader", "erase", EMAIL.upper(), "--yes"])
        assert result.exit_code == 0, result.output
    return pledge


def test_erasure_leaves_the_email_and_name_nowhere(erased_reader: Pledge, db: Session) -> None:
    for needle in (EMAIL, OLD_EMAIL, NAME):
        assert places_holding(db, needle) == [], needle
    pledge = db.get(Pledge, erased_reader.id)
    assert pledge is not None and pledge.article_url is None
    assert places_holding(db, ARTICLE) == []


def test_erasure_keeps_ids_and_amounts_in_stored_events(erased_reader: Pledge, db: Session) -> None:
    paid = db.scalars(select(StripeEvent).where(StripeEvent.type == "invoice.paid")).one()
    stored = paid.payload["data"]["object"]

    assert stored["customer"] == erased_reader.stripe_customer_id
    assert stored["amount_paid"] == 500
    assert stored["customer_email"] == stored["customer_name"] == "[erased]"


def test_erasure_scrubs_every_outbox_row_of_the_reader_and_its_manage_links(
    erased_reader: Pledge, db: Session
) -> None:
    rows = db.scalars(select(EmailOutbox)).all()

    assert rows and all(row.context == {} for row in rows)
    assert all(row.to_email.startswith("erased+") for row in rows)
    assert places_holding(db, "/manage/") == []


@pytest.mark.parametrize(
    "late",
    [
        lambda customer_id, sub: event("customer.updated", customer(customer_id)),
        lambda customer_id, sub: event("customer.deleted", customer(customer_id)),
        lambda customer_id, sub: event("invoice.paid", personal_invoice(customer_id, sub)),
        lambda customer_id, sub: event("charge.refunded", charge(customer_id)),
    ],
    ids=["customer.updated", "customer.deleted", "invoice.paid", "charge.refunded"],
)
def test_events_about_an_erased_reader_that_arrive_later_are_stored_scrubbed(
    erased_reader: Pledge, client: TestClient, db: Session, late: Any
) -> None:
    document = late(erased_reader.stripe_customer_id, erased_reader.stripe_subscription_id)

    assert post_event(client, document).status_code == 200
    stored = db.scalars(
        select(StripeEvent).where(StripeEvent.stripe_event_id == document["id"])
    ).one()
    with contextlib.suppress(*processing.TRANSIENT_ERRORS):
        processing.process(stored.id)

    for needle in (EMAIL, NAME):
        assert places_holding(db, needle) == [], needle
    db.expire_all()
    reader = db.get(Reader, erased_reader.reader_id)
    assert reader is not None and reader.email.startswith("erased+") and reader.name is None
