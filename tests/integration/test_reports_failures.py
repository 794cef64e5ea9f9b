"""Finance sees the failures: each failed payment, its decline reason, the reminders the reader got
and what happened next, as a list, a CSV and a table on the dashboard."""

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from billing.models import EmailOutbox, Payment
from tests.reports_ledger import Ledger, api_key, at, seed_ledger


def mail(
    db: Session, payment: Payment, template: str, key: str, status: str, when: datetime
) -> None:
    db.add(
        EmailOutbox(
            dedupe_key=key, template=template, to_email="reader@example.org",
            payment_id=payment.id, pledge_id=payment.pledge_id, status=status,
            sent_at=when if status == "sent" else None, created_at=when, updated_at=when,
        )
    )  # fmt: skip


@pytest.fixture
def ledger(db: Session) -> Ledger:
    """The reports ledger, plus the mails its three failed payments caused."""
    ledger = seed_ledger(db)
    cleo_oct, rosa_oct = ledger.payments["p3_oct"], ledger.payments["p10_oct"]
    cleo_oct.failure_code, cleo_oct.failure_message = "insufficient_funds", "Not enough money."
    mail(db, cleo_oct, "payment_failed", "reminder:in_p3_oct:1", "sent", at(10, 1, 11))
    mail(db, cleo_oct, "payment_reminder", "reminder:in_p3_oct:2", "sent", at(10, 3, 9))
    # A receipt is no reminder; neither is a reminder that never went out.
    mail(db, cleo_oct, "recovery_receipt", "receipt:in_p3_oct", "sent", at(10, 4, 10))
    mail(db, rosa_oct, "payment_failed", "reminder:in_p10_oct:1", "sent", at(10, 1, 11))
    mail(db, rosa_oct, "payment_reminder", "reminder:in_p10_oct:2", "canceled", at(10, 4))
    db.commit()
    return ledger


@pytest.fixture
def admin(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'admin')}"}


@pytest.fixture
def finance(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'finance')}"}


def get(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    response = client.get("/v1/reports/failures", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_failure_with_its_reason_reminders_and_outcome(
    client: TestClient, ledger: Ledger, admin: dict[str, str]
) -> None:
    page = get(client, admin)

    rows = [
        (item["payment_id"], item["reader_email"], item["amount"], item["currency"],
         item["failure_code"], item["reminders_sent"], item["reminders"], item["outcome"])
        for item in page["items"]
    ]  # fmt: skip
    p = ledger.payments
    # Latest failure first; the two of 1 October 10:00 by payment id, newest first.
    assert rows == [
        (p["p10_oct"].id, "rosa@example.org", 600, "eur", None, 1, "payment_failed",
         "still_failing"),
        (p["p3_oct"].id, "cleo@example.org", 1060, "usd", "insufficient_funds", 2,
         "payment_failed payment_reminder", "recovered"),
        (p["p4_sep"].id, "dan@example.org", 800, "usd", "card_declined", 0, None, "canceled"),
    ]  # fmt: skip
    cleo = page["items"][1]
    assert cleo["failure_message"] == "Not enough money."
    assert cleo["recovered_at"] == "2026-10-04T10:00:00Z"
    assert cleo["last_reminder_at"] == "2026-10-03T09:00:00Z"
    assert page["items"][0]["next_attempt_at"] == "2026-10-08T10:00:00Z"
    assert page["items"][2]["pledge_status"] == "canceled"
    assert page["next_cursor"] is None


def test_outcomes_tie_out_to_the_recovery_report(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    period = {"from": "2026-07-01", "to": "2026-10-31"}
    recovery = client.get("/v1/reports/recovery", headers=finance, params=period).json()

    for total in recovery["totals"]:
        currency = total["currency"]

        def count(outcome: str, currency: str = currency) -> int:
            items = get(client, finance, **period, currency=currency, outcome=outcome)["items"]
            return len(items)

        assert count("recovered") == total["recovered"]
        assert count("canceled") == total["lost"]
        assert count("still_failing") == total["still_retrying"]


def test_finance_keys_see_no_reader_email_and_no_key_sees_nothing(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    page = get(client, finance)

    assert len(page["items"]) == 3
    assert all("reader_email" not in item for item in page["items"])
    assert client.get("/v1/reports/failures").status_code == 401


def test_failures_page_through_with_the_cursor(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    seen, cursor = [], None
    while True:
        page = get(client, finance, limit=1, **({"cursor": cursor} if cursor else {}))
        seen += [item["payment_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    p = ledger.payments
    assert seen == [p["p10_oct"].id, p["p3_oct"].id, p["p4_sep"].id]


def test_failures_filter_by_day_currency_and_outcome(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    def ids(**params: str) -> list[int]:
        return [item["payment_id"] for item in get(client, finance, **params)["items"]]

    p = ledger.payments
    assert ids(to="2026-09-30") == [p["p4_sep"].id]
    assert ids(currency="eur") == [p["p10_oct"].id]
    assert ids(outcome="recovered") == [p["p3_oct"].id]
    bad = client.get("/v1/reports/failures", headers=finance, params={"outcome": "lost"})
    assert bad.status_code == 422
    assert "outcome" in bad.json()["message"]


def test_failures_as_csv(client: TestClient, ledger: Ledger, admin: dict[str, str]) -> None:
    response = client.get("/v1/reports/failures", headers=admin, params={"format": "csv"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    header, *lines = response.text.strip().splitlines()
    assert header.split(",")[:8] == [
        "payment_id", "pledge_id", "failed_at", "amount", "currency", "attempt_count",
        "failure_code", "failure_message",
    ]  # fmt: skip
    assert header.endswith(",reader_email")
    assert len(lines) == 3
    assert "payment_failed payment_reminder" in lines[1] and "recovered" in lines[1]


@pytest.mark.parametrize(("role", "shows_email"), [("admin", True), ("finance", False)])
def test_the_dashboard_lists_the_latest_failures(
    client: TestClient, db: Session, ledger: Ledger, role: str, shows_email: bool
) -> None:
    client.post("/reports/dashboard/session", data={"api_key": api_key(db, role)})

    html = client.get("/reports/dashboard", params={"month": "2026-10"}).text

    section = html[html.index('<section id="failures">') : html.index('<section id="campaigns">')]
    assert f'data-payment="{ledger.payments["p3_oct"].id}" data-outcome="recovered"' in section
    assert f'data-payment="{ledger.payments["p4_sep"].id}" data-outcome="canceled"' in section
    assert "insufficient_funds" in section and "still failing" in section
    assert ("cleo@example.org" in section) is shows_email
    assert 'href="/v1/reports/failures?' in html
