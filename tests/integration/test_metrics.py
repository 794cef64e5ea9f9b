"""GET /metrics and `pledges status`: the backlog an operator watches, behind an API key."""

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from billing.cli import app as cli
from tests.reports_ledger import api_key
from tests.stripe_events import event, invoice, new_id, post_event


def test_metrics_need_an_api_key(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_metrics_show_pending_events_and_their_age(client: TestClient, db: Session) -> None:
    key = api_key(db, "finance")
    post_event(client, event("invoice.paid", invoice(new_id("in"), new_id("sub"), "cus_x")))

    response = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'pledges_inbox_events{status="pending"} 1.0' in lines
    for name in (
        "pledges_inbox_oldest_pending_seconds",
        "pledges_outbox_oldest_unsent_seconds",
        "pledges_email_sends_failed",
        "# TYPE pledges_stripe_call_seconds histogram",
        "# TYPE pledges_pledges gauge",
    ):
        assert any(line.startswith(name) for line in lines), name


def test_status_prints_the_backlog(client: TestClient, db: Session) -> None:
    post_event(client, event("invoice.paid", invoice(new_id("in"), new_id("sub"), "cus_x")))

    result = CliRunner().invoke(cli, ["status"])

    assert result.exit_code == 0, result.output
    assert "inbox" in result.output and "pending 1" in result.output
    assert "outbox" in result.output
