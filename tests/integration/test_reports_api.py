"""Every finance report over a hand-checked ledger on PostgreSQL, figure by figure."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from billing.db import reset_caches
from billing.models import Reader
from tests.reports_ledger import Ledger, api_key, at, seed_ledger

PERIOD = {"from": "2026-07-01", "to": "2026-10-31"}


@pytest.fixture
def ledger(db: Session) -> Ledger:
    return seed_ledger(db)


@pytest.fixture
def finance(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'finance')}"}


@pytest.fixture
def admin(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'admin')}"}


def get(client: TestClient, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_summary_of_october_is_the_ledger_at_month_end(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(
        client, "/v1/reports/summary", finance, **{"from": "2026-10-01", "to": "2026-10-31"}
    )

    assert report["active_pledges"] == 4
    assert report["past_due_pledges"] == 0
    assert report["mrr"] == {"eur": 800 + 500 + 700, "usd": 1060}
    # 2000 / 3 = 666.67, rounded half up.
    assert report["average_pledge"] == {"eur": 667, "usd": 1060}
    assert report["amount_at_risk"] == {"eur": 0, "usd": 0}
    assert report["new_pledges"] == 1
    assert report["new_one_time_gifts"] == 0
    assert report["cancelled_pledges"] == 1
    # On 1 October: p1, p2, p10 (EUR), p3 and past-due p4 (USD).
    assert report["contributing_pledges_at_start"] == 5
    assert report["churn_rate"] == "0.2000"


def test_summary_of_september_undoes_every_later_change(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(
        client, "/v1/reports/summary", finance, **{"from": "2026-09-01", "to": "2026-09-30"}
    )

    assert report["active_pledges"] == 4
    assert report["past_due_pledges"] == 1
    assert report["mrr"] == {"eur": 500 + 500 + 600, "usd": 1060 + 800}
    assert report["average_pledge"] == {"eur": 533, "usd": 930}
    assert report["amount_at_risk"] == {"eur": 0, "usd": 800}
    assert report["new_pledges"] == 1
    assert report["new_one_time_gifts"] == 1
    assert report["cancelled_pledges"] == 1
    assert report["churn_rate"] == "0.2000"
    usd = next(row for row in report["by_currency"] if row["currency"] == "usd")
    assert usd == {
        "currency": "usd", "active_pledges": 1, "past_due_pledges": 1,
        "contributing_pledges": 2, "mrr": 1860, "average_pledge": 930, "amount_at_risk": 800,
    }  # fmt: skip


def test_summary_for_one_currency_leaves_the_others_out(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(
        client, "/v1/reports/summary", finance,
        **{"from": "2026-10-01", "to": "2026-10-31", "currency": "USD"},
    )  # fmt: skip

    assert report["mrr"] == {"usd": 1060}
    assert report["active_pledges"] == 1
    assert report["cancelled_pledges"] == 1
    assert report["churn_rate"] == "0.5000"


REVENUE_UTC = [
    # period, currency, payments, gross, refunded, disputed, fees, fees unknown, net
    ("2026-07-01", "eur", 2, 1500, 0, 0, 104, 0, 1396),
    ("2026-07-01", "usd", 1, 800, 0, 0, 53, 0, 747),
    ("2026-08-01", "eur", 3, 7500, 200, 0, 308, 0, 6992),
    ("2026-08-01", "usd", 2, 1860, 0, 0, 114, 0, 1746),
    ("2026-09-01", "eur", 5, 4800, 6000, 0, 204, 2, -1404),
    ("2026-09-01", "usd", 1, 1060, 0, 1060, 61, 0, -61),
    ("2026-10-01", "eur", 1, 700, 0, 0, 40, 0, 660),
    ("2026-10-01", "usd", 1, 1060, 0, 0, 61, 0, 999),
]
REVENUE_COLUMNS = (
    "period", "currency", "payments", "gross", "refunded", "disputed", "fees",
    "fees_unknown_payments", "net",
)  # fmt: skip


def revenue_tuples(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(row[column] for column in REVENUE_COLUMNS) for row in report["rows"]]


def test_revenue_by_month_and_currency(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(client, "/v1/reports/revenue", finance, **PERIOD)

    assert revenue_tuples(report) == REVENUE_UTC
    assert report["granularity"] == "month"


def test_revenue_months_follow_the_reporting_time_zone(
    client: TestClient, ledger: Ledger, finance: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPORTING_TIMEZONE", "Europe/Berlin")
    reset_caches()
    try:
        report = get(client, "/v1/reports/revenue", finance, **PERIOD, currency="eur")
    finally:
        monkeypatch.undo()
        reset_caches()

    assert report["timezone"] == "Europe/Berlin"
    by_month = {row[0]: row for row in revenue_tuples(report)}
    # The payment at 22:30 UTC on 30 September belongs to October in Berlin.
    assert by_month["2026-09-01"] == ("2026-09-01", "eur", 4, 4300, 6000, 0, 159, 2, -1859)
    assert by_month["2026-10-01"] == ("2026-10-01", "eur", 2, 1200, 0, 0, 85, 0, 1115)


def test_revenue_by_day_puts_each_payment_on_its_day(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(
        client, "/v1/reports/revenue", finance,
        **{"from": "2026-10-01", "to": "2026-10-31", "granularity": "day"},
    )  # fmt: skip

    assert [(r["period"], r["currency"], r["gross"]) for r in report["rows"]] == [
        ("2026-10-04", "usd", 1060),
        ("2026-10-10", "eur", 700),
    ]


def test_revenue_by_week_starts_weeks_on_monday(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(
        client, "/v1/reports/revenue", finance,
        **{"from": "2026-10-01", "to": "2026-10-31", "granularity": "week"},
    )  # fmt: skip

    # Sunday 4 October belongs to the week of Monday 28 September.
    assert [(r["period"], r["currency"], r["gross"]) for r in report["rows"]] == [
        ("2026-09-28", "usd", 1060),
        ("2026-10-05", "eur", 700),
    ]


MOVEMENT = [
    # period, currency, start, new, expansion, contraction, churned, reactivated, net, end
    ("2026-07-01", "eur", 0, 1500, 0, 0, 0, 0, 1500, 1500),
    ("2026-07-01", "usd", 0, 800, 0, 0, 0, 0, 800, 800),
    ("2026-08-01", "eur", 1500, 500, 0, 0, 0, 0, 500, 2000),
    ("2026-08-01", "usd", 800, 1060, 0, 0, 0, 0, 1060, 1860),
    ("2026-09-01", "eur", 2000, 300, 0, 400, 300, 0, -400, 1600),
    ("2026-09-01", "usd", 1860, 0, 0, 0, 0, 0, 0, 1860),
    ("2026-10-01", "eur", 1600, 0, 300, 0, 600, 700, 400, 2000),
    ("2026-10-01", "usd", 1860, 0, 0, 0, 800, 0, -800, 1060),
]
MOVEMENT_COLUMNS = (
    "period", "currency", "mrr_start", "new", "expansion", "contraction", "churned",
    "reactivated", "net_change", "mrr_end",
)  # fmt: skip


def test_mrr_movement_per_month_ties_out_to_mrr(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(client, "/v1/reports/movement", finance, **PERIOD)

    rows = [tuple(row[column] for column in MOVEMENT_COLUMNS) for row in report["rows"]]
    assert rows == MOVEMENT
    october_eur = report["rows"][6]
    assert (october_eur["new_count"], october_eur["churned_count"]) == (0, 1)
    assert october_eur["reactivated_count"] == 1
    july_eur = report["rows"][0]
    assert july_eur["new_count"] == 2


def test_recovery_counts_recovered_lost_and_retrying_payments(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(client, "/v1/reports/recovery", finance, **PERIOD)

    rows = {(row["period"], row["currency"]): row for row in report["rows"]}
    assert set(rows) == {("2026-09-01", "usd"), ("2026-10-01", "usd"), ("2026-10-01", "eur")}
    assert rows[("2026-09-01", "usd")] | {} == {
        "period": "2026-09-01", "currency": "usd", "failed": 1, "failed_amount": 800,
        "recovered": 0, "recovered_amount": 0, "recovered_after_reminder_1": 0,
        "recovered_after_reminder_2": 0, "recovered_after_reminder_3_or_more": 0,
        "lost": 1, "lost_amount": 800, "still_retrying": 0, "recovery_rate": "0.0000",
    }  # fmt: skip
    october_usd = rows[("2026-10-01", "usd")]
    assert (october_usd["recovered"], october_usd["recovered_amount"]) == (1, 1060)
    assert october_usd["recovered_after_reminder_1"] == 1
    assert october_usd["recovery_rate"] == "1.0000"
    october_eur = rows[("2026-10-01", "eur")]
    assert (october_eur["failed"], october_eur["still_retrying"]) == (1, 1)
    assert october_eur["recovery_rate"] is None
    totals = {row["currency"]: row for row in report["totals"]}
    assert (totals["usd"]["failed"], totals["usd"]["failed_amount"]) == (2, 1860)
    assert (totals["usd"]["recovered"], totals["usd"]["lost"]) == (1, 1)
    assert totals["usd"]["recovery_rate"] == "0.5000"
    assert totals["eur"]["period"] is None and totals["eur"]["still_retrying"] == 1


def test_attribution_by_campaign_source_and_article(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(client, "/v1/reports/attribution", finance, **PERIOD)

    rows = {
        (r["dimension"], r["value"], r["currency"]): (
            r["pledges"], r["recurring_pledges"], r["contributing_pledges"], r["mrr"],
            r["one_time_amount"],
        )
        for r in report["rows"]
    }  # fmt: skip
    a1, a2 = "https://news.example/a1", "https://news.example/a2"
    assert rows == {
        ("campaign", "spring", "eur"): (2, 2, 2, 1300, 0),
        ("campaign", "fall", "eur"): (1, 0, 0, 0, 2500),
        ("campaign", "fall", "usd"): (1, 1, 1, 1060, 0),
        ("campaign", None, "eur"): (3, 3, 1, 700, 0),
        ("campaign", None, "usd"): (1, 1, 0, 0, 0),
        ("source", "article", "eur"): (3, 2, 1, 800, 2500),
        ("source", "article", "usd"): (1, 1, 1, 1060, 0),
        ("source", "newsletter", "eur"): (2, 2, 2, 1200, 0),
        ("source", "homepage", "eur"): (1, 1, 0, 0, 0),
        ("source", "homepage", "usd"): (1, 1, 0, 0, 0),
        ("article_url", a1, "eur"): (2, 2, 2, 1300, 0),
        ("article_url", a2, "eur"): (1, 0, 0, 0, 2500),
        ("article_url", a2, "usd"): (1, 1, 1, 1060, 0),
        ("article_url", None, "eur"): (3, 3, 1, 700, 0),
        ("article_url", None, "usd"): (1, 1, 0, 0, 0),
    }
    assert report["rows"][0]["dimension"] == "article_url"
    campaigns = [r["value"] for r in report["rows"] if r["dimension"] == "campaign"]
    assert campaigns[0] == "spring"


def test_attribution_top_keeps_the_biggest_values_per_dimension_and_currency(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    report = get(client, "/v1/reports/attribution", finance, **PERIOD, top=1)

    assert report["top"] == 1
    assert [(r["dimension"], r["currency"], r["value"], r["mrr"]) for r in report["rows"]] == [
        ("article_url", "eur", "https://news.example/a1", 1300),
        ("article_url", "usd", "https://news.example/a2", 1060),
        ("campaign", "eur", "spring", 1300),
        ("campaign", "usd", "fall", 1060),
        ("source", "eur", "newsletter", 1200),
        ("source", "usd", "article", 1060),
    ]


def test_pledge_list_pages_through_every_pledge_with_stripe_ids(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = get(client, "/v1/reports/pledges", finance, **params)
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(ledger.pledges) == 9
    assert len({item["id"] for item in seen}) == 9
    assert [item["created_at"] for item in seen] == sorted(
        (item["created_at"] for item in seen), reverse=True
    )
    p3 = next(item for item in seen if item["id"] == str(ledger.pledges["p3"].id))
    assert p3["stripe_subscription_id"] == "sub_p3"
    assert p3["stripe_customer_id"] == "cus_cleo"
    assert (p3["amount"], p3["fee_cover"], p3["currency"]) == (1000, 60, "usd")
    assert "reader_email" not in p3


def test_pledge_list_filters(client: TestClient, ledger: Ledger, finance: dict[str, str]) -> None:
    def ids(**params: Any) -> set[str]:
        return {
            item["id"] for item in get(client, "/v1/reports/pledges", finance, **params)["items"]
        }

    def keys(*names: str) -> set[str]:
        return {str(ledger.pledges[name].id) for name in names}

    assert ids(status="canceled") == keys("p4", "p5")
    assert ids(currency="usd") == keys("p3", "p4")
    assert ids(interval="once") == keys("p8")
    assert ids(interval="year") == keys("p2")
    assert ids(campaign="spring") == keys("p1", "p2")
    assert ids(**{"from": "2026-10-01", "to": "2026-10-31"}) == keys("p6", "p9")
    assert ids(status="active", currency="eur", interval="month") == keys("p1", "p6")


def test_payment_list_filters_and_carries_stripe_ids(
    client: TestClient, ledger: Ledger, finance: dict[str, str]
) -> None:
    failed = get(client, "/v1/reports/payments", finance, status="failed")["items"]
    assert {item["stripe_invoice_id"] for item in failed} == {"in_p4_sep", "in_p10_oct"}

    october = get(
        client, "/v1/reports/payments", finance, **{"from": "2026-10-01", "to": "2026-10-31"}
    )["items"]
    assert [item["stripe_invoice_id"] for item in october] == [
        "in_p6_oct",
        "in_p10_oct",
        "in_p3_oct",
    ]
    p6 = october[0]
    assert (p6["amount"], p6["currency"], p6["fee"], p6["net"]) == (700, "eur", 40, 660)
    assert p6["stripe_charge_id"] == "ch_p6_oct" and p6["stripe_customer_id"] == "cus_eve"
    gifts = get(client, "/v1/reports/payments", finance, interval="once")["items"]
    assert [item["stripe_payment_intent_id"] for item in gifts] == ["pi_gift_p8"]
    spring = get(client, "/v1/reports/payments", finance, campaign="spring", limit=1000)["items"]
    assert len(spring) == 4 + 1  # p1 monthly, p2 yearly


def test_only_admin_keys_see_and_filter_by_reader_email(
    client: TestClient,
    db: Session,
    ledger: Ledger,
    finance: dict[str, str],
    admin: dict[str, str],
) -> None:
    as_admin = get(client, "/v1/reports/pledges", admin, email="Cleo@example.org")["items"]
    assert [(item["reader_email"], item["reader_name"]) for item in as_admin] == [
        ("cleo@example.org", "Cleo")
    ]
    payments = get(client, "/v1/reports/payments", admin, email="cleo@example.org")["items"]
    assert {item["reader_email"] for item in payments} == {"cleo@example.org"}
    assert len(payments) == 3

    # Cleo asks to be forgotten: her financial rows stay, her email and name go.
    db.execute(update(Reader).where(Reader.email == "cleo@example.org").values(erased_at=at(11, 1)))
    db.commit()
    assert get(client, "/v1/reports/pledges", admin, email="cleo@example.org")["items"] == []
    erased = get(client, "/v1/reports/pledges", admin, currency="usd")["items"]
    p3 = next(item for item in erased if item["stripe_subscription_id"] == "sub_p3")
    assert (p3["reader_email"], p3["reader_name"]) == (None, None)

    refused = client.get(
        "/v1/reports/pledges", headers=finance, params={"email": "cleo@example.org"}
    )
    assert refused.status_code == 403
    assert refused.json()["message"] == "Filtering by email needs an admin key."
    for path in ("/v1/reports/pledges", "/v1/reports/payments"):
        items = get(client, path, finance)["items"]
        assert all("reader_email" not in item and "reader_name" not in item for item in items)
