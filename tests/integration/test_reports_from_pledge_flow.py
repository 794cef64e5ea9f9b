"""A pledge made through the public API shows up in the reports without anyone telling them."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.conftest import BrowserStripe
from tests.integration.test_pledges_api import pledge_with_card
from tests.reports_ledger import api_key


def test_a_confirmed_annual_pledge_counts_in_mrr_and_as_new_movement(
    client: TestClient, browser_stripe: BrowserStripe, db: Session
) -> None:
    headers = {"Authorization": f"Bearer {api_key(db, 'finance')}"}
    _created, confirmed = pledge_with_card(
        client, browser_stripe, amount=6000, currency="usd", interval="year", campaign="appeal"
    )
    assert confirmed.json()["status"] == "active"
    today = datetime.now(UTC).date()
    # A day either side, so a run across midnight still finds the pledge in the period.
    period = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}

    summary = client.get("/v1/reports/summary", headers=headers, params=period).json()
    movement = client.get("/v1/reports/movement", headers=headers, params=period).json()
    attribution = client.get("/v1/reports/attribution", headers=headers, params=period).json()

    assert summary["mrr"] == {"usd": 500}
    assert (summary["active_pledges"], summary["new_pledges"]) == (1, 1)
    (row,) = [row for row in movement["rows"] if row["new_count"]]
    assert (row["currency"], row["new"], row["new_count"], row["mrr_end"]) == ("usd", 500, 1, 500)
    campaigns = [r for r in attribution["rows"] if r["dimension"] == "campaign"]
    assert [(r["value"], r["mrr"]) for r in campaigns] == [("appeal", 500)]
