"""The operator's commands: list and replay events, reconcile the ledger, import from Stripe."""

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing.cli import app
from billing.models import EmailOutbox, Payment, Pledge
from tests.stripe_events import (
    dashboard_subscription,
    deliver,
    event,
    invoice,
    make_pledge,
    new_id,
    post_event,
    stored_event,
    subscription,
)
from webhooks import processing
from webhooks.errors import RetryLater

runner = CliRunner()


def count(db: Session, model: type[object]) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def failed_orphan_invoice(client: TestClient, db: Session) -> tuple[str, str]:
    """An invoice.paid that gave up because its subscription was unknown: (event id, sub id)."""
    sub_id = new_id("sub")
    paid = event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x"))
    post_event(client, paid)
    row_id = stored_event(db, paid["id"]).id
    try:
        processing.process(row_id)
    except RetryLater as error:
        processing.record_error(row_id, f"RetryLater: {error}", give_up_at=0)
    return str(paid["id"]), sub_id


def test_events_list_failed_shows_only_failed_events_with_their_error(
    client: TestClient, db: Session
) -> None:
    failed_id, _ = failed_orphan_invoice(client, db)
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    handled = deliver(client, db, event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x")))

    result = runner.invoke(app, ["events", "list", "--failed"])

    assert result.exit_code == 0, result.output
    assert failed_id in result.output and "not in Stripe yet" in result.output
    assert handled.stripe_event_id not in result.output
    everything = runner.invoke(app, ["events", "list"])
    assert failed_id in everything.output and handled.stripe_event_id in everything.output


def test_events_list_says_when_nothing_failed(db: Session) -> None:
    result = runner.invoke(app, ["events", "list", "--failed"])

    assert (result.exit_code, result.output.strip()) == (0, "no failed events")


def test_replay_runs_a_failed_event_again_by_stripe_id(client: TestClient, db: Session) -> None:
    failed_id, sub_id = failed_orphan_invoice(client, db)
    make_pledge(db, subscription_id=sub_id)

    result = runner.invoke(app, ["events", "replay", failed_id])

    assert result.exit_code == 0, result.output
    assert "handled" in result.output and "paid 500 eur" in result.output
    assert stored_event(db, failed_id).status == "handled"
    assert count(db, Payment) == 1


def test_replay_since_reruns_recent_events_without_duplicating_anything(
    client: TestClient, db: Session
) -> None:
    sub_id = new_id("sub")
    make_pledge(db, subscription_id=sub_id)
    for _ in range(2):
        deliver(client, db, event("invoice.paid", invoice(new_id("in"), sub_id, "cus_x")))

    result = runner.invoke(app, ["events", "replay", "--since", "2000-01-01T00:00:00"])

    assert result.exit_code == 0, result.output
    assert "replayed 2 event(s), 0 not handled" in result.output
    assert count(db, Payment) == 2 and count(db, EmailOutbox) == 2


def test_replay_refuses_bad_input_and_changes_nothing(client: TestClient, db: Session) -> None:
    failed_id, _ = failed_orphan_invoice(client, db)

    neither = runner.invoke(app, ["events", "replay"])
    both = runner.invoke(app, ["events", "replay", failed_id, "--since", "2020-01-01"])
    unknown = runner.invoke(app, ["events", "replay", "evt_nobody_sent"])
    bad_date = runner.invoke(app, ["events", "replay", "--since", "last tuesday"])

    assert (neither.exit_code, both.exit_code, bad_date.exit_code) == (2, 2, 2)
    assert "give an event id or --since" in neither.output
    assert unknown.exit_code == 1 and "no stored event evt_nobody_sent" in unknown.output
    assert stored_event(db, failed_id).status == "failed"


def test_reconcile_repairs_status_and_missing_payments_from_stripe(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    sub_id, customer_id = dashboard_subscription(stripe_api, "drift@example.org", amount=900)
    deliver(
        client,
        db,
        event("customer.subscription.created", subscription(sub_id, customer_id, amount=900)),
    )
    pledge = db.scalars(select(Pledge)).one()
    # Drift: a missed invoice.paid and a status the webhooks never corrected.
    db.execute(update(Pledge).values(status="past_due"))
    db.commit()
    assert count(db, Payment) == 0

    result = runner.invoke(app, ["reconcile"])

    assert result.exit_code == 0, result.output
    assert f"pledge {pledge.id}: past_due -> active" in result.output
    assert "paid 900 eur" in result.output
    db.expire_all()
    assert db.get(Pledge, pledge.id).status == "active"  # type: ignore[union-attr]
    repaired = db.scalars(select(Payment).where(Payment.pledge_id == pledge.id)).all()
    assert [p.amount_minor for p in repaired] == [900]
    assert count(db, EmailOutbox) == 0  # repairs are quiet
    again = runner.invoke(app, ["reconcile"])
    assert again.output.strip().endswith("ledger matches Stripe")


def test_reconcile_since_leaves_older_pledges_alone(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    sub_id, _ = dashboard_subscription(stripe_api, "older@example.org")
    runner.invoke(app, ["import"])
    db.execute(
        update(Pledge).where(Pledge.stripe_subscription_id == sub_id).values(status="past_due")
    )
    db.commit()

    result = runner.invoke(app, ["reconcile", "--since", "2999-01-01"])

    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "ledger matches Stripe"
    status = db.scalars(select(Pledge.status).where(Pledge.stripe_subscription_id == sub_id))
    assert status.one() == "past_due"


def test_reconcile_cancels_a_pledge_canceled_in_stripe(
    client: TestClient, db: Session, stripe_api: httpx.Client
) -> None:
    sub_id, _ = dashboard_subscription(stripe_api, "gone@example.org")
    runner.invoke(app, ["import"])
    stripe_api.delete(f"/v1/subscriptions/{sub_id}").raise_for_status()

    result = runner.invoke(app, ["reconcile"])

    assert result.exit_code == 0, result.output
    assert "active -> canceled" in result.output
    status = db.scalars(select(Pledge.status).where(Pledge.stripe_subscription_id == sub_id))
    assert status.one() == "canceled"


def test_import_backfills_subscriptions_already_in_stripe_once(
    db: Session, stripe_api: httpx.Client
) -> None:
    first, _ = dashboard_subscription(stripe_api, "one@example.org", amount=500)
    second, _ = dashboard_subscription(stripe_api, "two@example.org", amount=1500)

    result = runner.invoke(app, ["import"])

    assert result.exit_code == 0, result.output
    pledges = {p.stripe_subscription_id: p for p in db.scalars(select(Pledge))}
    assert {first, second} <= set(pledges)
    assert (pledges[first].amount_minor, pledges[first].status) == (500, "active")
    assert pledges[second].amount_minor == 1500
    paid = db.scalars(select(Payment).where(Payment.stripe_subscription_id.in_([first, second])))
    assert sorted(p.amount_minor for p in paid) == [500, 1500]
    assert count(db, EmailOutbox) == 0
    again = runner.invoke(app, ["import"])
    assert again.output.strip() == "nothing to import"
