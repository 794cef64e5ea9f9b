"""The drift check: Stripe's recent charges, refunds and disputes against the ledger, missed
events replayed through the inbox and handlers, the rest reported and recorded."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing import stripe_gateway
from billing.cli import app
from billing.models import EmailOutbox, Payment, ReconcileRun, Refund, StripeEvent
from tests.payout_stripe import FakeStripe, serving
from tests.reports_ledger import LedgerBuilder, api_key
from tests.stripe_events import event, fixture, post_event
from webhooks.drift import check_drift

NOW = int(time.time())
HOUR = 3600


@pytest.fixture
def drifted(db: Session, client: TestClient) -> FakeStripe:
    """The ledger holds ch_a (500); Stripe also holds a 200 refund of it whose event never
    reached us, and ch_orphan (700), which no event we could replay explains."""
    b = LedgerBuilder(db)
    day_ago = datetime.now(UTC) - timedelta(days=1)
    b.pledge("pa", "ada", 500, "eur", "month", day_ago)
    b.payment("a", "pa", 500, day_ago, fee=45)
    db.commit()
    charge = fixture("charge", id="ch_a", amount=500, currency="eur", status="succeeded",
                     paid=True, payment_intent=None, created=NOW - 24 * HOUR)  # fmt: skip
    orphan = fixture("charge", id="ch_orphan", amount=700, currency="eur", status="succeeded",
                     paid=True, payment_intent=None, created=NOW - 2 * HOUR)  # fmt: skip
    refund = fixture("refund", id="re_missed", charge="ch_a", amount=200, currency="eur",
                     status="succeeded", created=NOW - 12 * HOUR)  # fmt: skip
    missed = event("refund.created", refund, created=NOW - 12 * HOUR, id="evt_missed")
    # An event the inbox already holds is not stored or run again.
    known = event("customer.updated", fixture("customer", id="cus_nobody"),
                  created=NOW - 20 * HOUR, id="evt_known")  # fmt: skip
    assert post_event(client, known).status_code == 200
    return FakeStripe(charges=[charge, orphan], refunds=[refund], events=[missed, known])


def test_a_missed_refund_event_is_replayed_and_the_rest_reported(
    db: Session, client: TestClient, drifted: FakeStripe
) -> None:
    with serving(drifted) as reader:
        result = check_drift(reader, days=3)

    assert (result.checked, result.missing, result.replayed) == (3, 2, 1)
    day = datetime.fromtimestamp(NOW - 2 * HOUR, UTC).date()
    assert result.unexplained == [
        f"charge ch_orphan (700 eur, succeeded, {day}): not in the ledger"
    ]
    assert result.status == "drift"
    refund = db.scalars(select(Refund)).one()
    assert (refund.stripe_refund_id, refund.amount_minor) == ("re_missed", 200)
    assert db.scalars(select(Payment.refunded_minor)).one() == 200
    replayed = db.scalars(select(StripeEvent).where(StripeEvent.stripe_event_id == "evt_missed"))
    assert replayed.one().status == "handled"
    assert db.scalars(select(EmailOutbox)).all() == []  # repairs are quiet
    run = db.scalars(select(ReconcileRun)).one()
    assert (run.status, run.replayed, run.unexplained) == ("drift", 1, result.unexplained)
    assert run.finished_at is not None

    with serving(drifted) as reader:
        again = check_drift(reader, days=3)
    assert (again.missing, again.replayed, again.unexplained) == (1, 0, result.unexplained)


def test_the_last_run_shows_in_the_api_the_dashboard_and_pledges_reconcile(
    db: Session, client: TestClient, drifted: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(drifted) as reader:
        monkeypatch.setattr(stripe_gateway, "get_stripe_reader", lambda: reader)
        result = CliRunner().invoke(app, ["reconcile", "--days", "2"])

    assert result.exit_code == 0, result.output
    assert "1 missed event(s) replayed, 1 unexplained: drift" in result.output
    assert "unexplained: charge ch_orphan" in result.output
    headers = {"Authorization": f"Bearer {api_key(db, 'finance')}"}
    last = client.get("/v1/reports/drift", headers=headers).json()
    assert (last["status"], last["days"], last["replayed"]) == ("drift", 2, 1)
    client.cookies.set("pledges_reports_key", headers["Authorization"].split()[1])
    page = client.get("/reports/dashboard").text
    assert "ch_orphan" in page and 'data-figure="drift_status">drift' in page


class RefusingStripe(FakeStripe):
    async def handle(self, request: web.Request) -> web.Response:
        error = {"error": {"type": "api_error", "message": "Stripe is having a bad day"}}
        return web.json_response(error, status=400)


def test_a_stripe_error_leaves_a_failed_run_on_record(db: Session) -> None:
    with serving(RefusingStripe()) as reader:
        result = check_drift(reader, days=1)

    assert result.status == "failed" and "bad day" in (result.error or "")
    assert db.scalars(select(ReconcileRun.status)).one() == "failed"


def test_the_drift_check_runs_nightly() -> None:
    from workers.celery_app import app as celery

    schedule = celery.conf.beat_schedule["reconcile-drift-check"]
    assert schedule["task"] == "workers.reconcile.drift_check"
    celery.loader.import_default_modules()  # what a worker does at start-up
    assert "workers.reconcile.drift_check" in celery.tasks
