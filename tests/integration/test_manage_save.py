"""Cancel asks once: lower, skip, pause or change the card instead, in Stripe and in the ledger;
a paused pledge comes back by itself on the date shown, with a mail the week before."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.manage.saves import months_later
from billing.models import EmailOutbox, OutgoingEvent, Pledge, PledgeHistory
from billing.reader_links import manage_token
from billing.stripe_gateway import get_stripe_reader
from tests.conftest import BrowserStripe, CaughtMail
from tests.integration.test_manage import active_pledge, fresh, outbox
from tests.reports_ledger import api_key
from tests.stripe_events import DAY, deliver, event, make_pledge, new_id, subscription
from workers.emails import deliver as send_mail
from workers.pauses import queue_resume_notices, resume_due


@pytest.fixture
def pledge(client: TestClient, browser_stripe: BrowserStripe) -> Pledge:
    return active_pledge(client, browser_stripe, amount=1000)


def save_actions(db: Session, pledge: Pledge) -> list[str | None]:
    db.expire_all()
    rows = db.scalars(
        select(PledgeHistory.save_action)
        .where(PledgeHistory.pledge_id == pledge.id, PledgeHistory.save_action.is_not(None))
        .order_by(PledgeHistory.id)
    )
    return list(rows)


def stripe_subscription(stripe_api: httpx.Client, pledge: Pledge) -> dict[str, Any]:
    return dict(stripe_api.get(f"/v1/subscriptions/{pledge.stripe_subscription_id}").json())


def start_cancel(client: TestClient, token: str) -> httpx.Response:
    return client.post(f"/manage/{token}/cancel/start", follow_redirects=True)


def test_cancel_shows_the_save_page_with_every_choice_and_counts_one_start(
    client: TestClient, pledge: Pledge, db: Session
) -> None:
    token = manage_token(pledge.id)

    page = start_cancel(client, token)
    reloaded = start_cancel(client, token)

    assert page.status_code == reloaded.status_code == 200
    assert str(page.url).endswith(f"/manage/{token}/save")
    for choice in ("Lower my pledge", "Skip the next payment", "Pause my pledge",
                   "Change my card", "Cancel my pledge", "from €2.00"):  # fmt: skip
        assert choice in page.text
    assert save_actions(db, pledge) == ["cancel_started"]
    assert fresh(db, pledge).status == "active"
    # The newsroom's own systems hear of it once (outgoing webhooks), so a CRM can reach out.
    started = db.scalars(
        select(OutgoingEvent).where(OutgoingEvent.type == "pledge.cancellation_started")
    ).all()
    assert [event.data["pledge"]["id"] for event in started] == [str(pledge.id)]


def test_skipping_pauses_collection_in_stripe_until_the_day_after_the_next_payment(
    client: TestClient, pledge: Pledge, db: Session, stripe_api: httpx.Client
) -> None:
    token = manage_token(pledge.id)
    start_cancel(client, token)

    skipped = client.post(f"/manage/{token}/save/skip", follow_redirects=False)
    again = client.post(f"/manage/{token}/save/skip")

    assert skipped.status_code == 303
    assert again.status_code == 409 and "Only an active pledge can be paused." in again.text
    pause = stripe_subscription(stripe_api, pledge)["pause_collection"]
    expected = months_later(utcnow(), 1) + timedelta(days=1)
    assert pause["behavior"] == "void"
    assert abs(pause["resumes_at"] - expected.timestamp()) < 120
    after = fresh(db, pledge)
    assert after.status == "paused" and after.resumes_at is not None
    assert int(after.resumes_at.timestamp()) == pause["resumes_at"]
    assert save_actions(db, pledge) == ["cancel_started", "skipped"]
    [mail] = outbox(db, "paused")
    assert mail.pledge_id == pledge.id
    shown = client.get(skipped.headers["location"])
    assert "Your next payment is skipped; your pledge continues on" in shown.text
    assert f"{after.resumes_at:%B} {after.resumes_at.day}, {after.resumes_at:%Y}" in shown.text


def test_pausing_for_two_months_and_a_bad_choice_changes_nothing(
    client: TestClient, pledge: Pledge, db: Session, stripe_api: httpx.Client
) -> None:
    token = manage_token(pledge.id)
    start_cancel(client, token)

    refused = client.post(f"/manage/{token}/save/pause", data={"months": "4"})
    assert refused.status_code == 422 and "one, two or three months" in refused.text
    assert stripe_subscription(stripe_api, pledge)["pause_collection"] is None
    assert fresh(db, pledge).status == "active"

    paused = client.post(f"/manage/{token}/save/pause", data={"months": "2"})

    assert paused.status_code == 200 and "Your pledge is paused until" in paused.text
    pause = stripe_subscription(stripe_api, pledge)["pause_collection"]
    assert abs(pause["resumes_at"] - months_later(utcnow(), 2).timestamp()) < 120
    assert fresh(db, pledge).status == "paused"
    assert save_actions(db, pledge) == ["cancel_started", "paused"]


def test_lowering_switches_the_plan_down_to_the_minimum_and_refuses_more_or_less(
    client: TestClient,
    pledge: Pledge,
    db: Session,
    stripe_api: httpx.Client,
    smtp_server: CaughtMail,
) -> None:
    token = manage_token(pledge.id)
    start_cancel(client, token)

    too_low = client.post(f"/manage/{token}/save/lower", data={"amount": "1.99"})
    not_lower = client.post(f"/manage/{token}/save/lower", data={"amount": "10"})
    lowered = client.post(f"/manage/{token}/save/lower", data={"amount": "2"})

    for refused in (too_low, not_lower):
        assert refused.status_code == 422
        assert "Enter an amount from €2.00 up to €9.99." in refused.text
        assert "Before you go" in refused.text  # the save page again, not the manage page
    assert lowered.status_code == 200 and "Your pledge was lowered." in lowered.text
    item = stripe_subscription(stripe_api, pledge)["items"]["data"][0]
    assert item["plan"]["id"] == "pledge-eur-200-month"
    assert fresh(db, pledge).amount_minor == 200
    assert save_actions(db, pledge) == ["cancel_started", "lowered"]
    [mail] = outbox(db, "amount_changed")
    assert mail.context["new_amount_minor"] == 200
    assert send_mail(mail.dedupe_key).outcome == "sent"
    [message] = smtp_server.messages
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "your support changed from €10.00 a month to €2.00 a month" in body


def test_change_card_choice_leads_to_the_card_form_and_cancel_anyway_keeps_the_reason(
    client: TestClient, pledge: Pledge, db: Session, stripe_api: httpx.Client
) -> None:
    token = manage_token(pledge.id)
    start_cancel(client, token)

    card = client.post(f"/manage/{token}/save/card", follow_redirects=False)
    client.post(f"/manage/{token}/save/card")
    start_cancel(client, token)
    cancelled = client.post(f"/manage/{token}/cancel", data={"reason": "Moving abroad"})

    assert card.headers["location"] == f"/manage/{token}?done=card#card-update"
    assert cancelled.status_code == 200 and "Your pledge was cancelled." in cancelled.text
    after = fresh(db, pledge)
    assert (after.status, after.cancel_reason) == ("canceled", "Moving abroad")
    assert stripe_subscription(stripe_api, pledge)["status"] == "canceled"
    assert save_actions(db, pledge) == ["cancel_started", "card", "cancel_started"]
    assert start_cancel(client, token).url.path == f"/manage/{token}"  # nothing left to save


def test_movement_report_counts_cancellations_started_and_saved(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    kept = active_pledge(client, browser_stripe, email="kept@example.org")
    lost = active_pledge(client, browser_stripe, email="lost@example.org")
    start_cancel(client, manage_token(kept.id))
    client.post(f"/manage/{manage_token(kept.id)}/save/skip")
    start_cancel(client, manage_token(lost.id))
    client.post(f"/manage/{manage_token(lost.id)}/cancel", data={"reason": ""})

    headers = {"Authorization": f"Bearer {api_key(db, 'finance')}"}
    today = utcnow().date().isoformat()
    report = client.get(
        "/v1/reports/movement", headers=headers, params={"from": today, "to": today}
    ).json()

    [row] = report["rows"]
    assert (row["cancellations_started"], row["saved"], row["save_rate"]) == (2, 1, "0.5000")
    # The save rows change no figure: MRR is the kept pledge's, paused, so none.
    assert row["mrr_end"] == 0 and row["churned_count"] == 2


def test_paused_pledge_resumes_on_its_date_with_one_mail_the_week_before(
    client: TestClient, pledge: Pledge, db: Session, smtp_server: CaughtMail
) -> None:
    token = manage_token(pledge.id)
    client.post(f"/manage/{token}/save/pause", data={"months": "1"})
    resumes_at = fresh(db, pledge).resumes_at
    assert resumes_at is not None
    stripe = get_stripe_reader()

    with time_machine.travel(resumes_at - timedelta(days=10), tick=False):
        assert queue_resume_notices(db, utcnow()) == 0
    with time_machine.travel(resumes_at - timedelta(days=6), tick=False):
        assert resume_due(db, stripe, utcnow()) == 0
        assert queue_resume_notices(db, utcnow()) == 1
        db.commit()
        assert queue_resume_notices(db, utcnow()) == 0
        db.commit()
        [notice] = outbox(db, "resuming")
        assert send_mail(notice.dedupe_key).outcome == "sent"
    with time_machine.travel(resumes_at - timedelta(minutes=1), tick=False):
        assert resume_due(db, stripe, utcnow()) == 0
        db.commit()
    assert fresh(db, pledge).status == "paused"
    with time_machine.travel(resumes_at + timedelta(minutes=1), tick=False):
        assert resume_due(db, stripe, utcnow()) == 1
        db.commit()

    after = fresh(db, pledge)
    assert (after.status, after.resumes_at) == ("active", None)
    [message] = smtp_server.messages
    day = f"{resumes_at:%B} {resumes_at.day}, {resumes_at:%Y}"
    assert message["Subject"].endswith(f"resumes on {day}")
    assert "€10.00" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_ledger_follows_stripe_pause_events_and_a_resume_it_reports(
    client: TestClient, db: Session
) -> None:
    subscription_id = new_id("sub")
    pledge = make_pledge(db, subscription_id=subscription_id, customer_id=new_id("cus"))
    assert pledge.stripe_customer_id is not None
    resumes = int((utcnow() + timedelta(days=20)).timestamp())
    paused = subscription(subscription_id, pledge.stripe_customer_id)
    paused["pause_collection"] = {"behavior": "void", "resumes_at": resumes}

    resumed = subscription(subscription_id, pledge.stripe_customer_id)

    deliver(client, db, event("customer.subscription.updated", paused, created=resumes - 30 * DAY))
    after_pause = fresh(db, pledge)
    status, resumes_at = after_pause.status, after_pause.resumes_at
    deliver(client, db, event("customer.subscription.updated", resumed))

    assert status == "paused"
    assert resumes_at == datetime.fromtimestamp(resumes, UTC)
    assert (fresh(db, pledge).status, fresh(db, pledge).resumes_at) == ("active", None)


def test_resuming_mail_is_not_sent_after_the_reader_cancelled(
    client: TestClient, pledge: Pledge, db: Session, smtp_server: CaughtMail
) -> None:
    token = manage_token(pledge.id)
    client.post(f"/manage/{token}/save/pause", data={"months": "1"})
    resumes_at = fresh(db, pledge).resumes_at
    assert resumes_at is not None
    with time_machine.travel(resumes_at - timedelta(days=3), tick=False):
        queue_resume_notices(db, utcnow())
        db.commit()
        client.post(f"/manage/{token}/cancel", data={"reason": ""})
        [notice] = outbox(db, "resuming")
        assert send_mail(notice.dedupe_key).outcome == "canceled"

    assert smtp_server.messages == []
    assert db.scalars(select(EmailOutbox).where(EmailOutbox.template == "cancellation")).one()
