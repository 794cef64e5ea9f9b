"""The cohort report against a ledger small enough to work out by hand.

As of 1 November 2026, EUR unless said:
- ada: monthly 500 from 5 July, raised to 800 on 10 September (an upgrade), still giving;
  paid 500 in July, August and September and 800 in October: 2300.
- ben: monthly 1000 from 10 July, cancelled by himself on 1 September; paid July and August:
  2000. Still giving one month on (10 August), not two (10 September).
- cleo: monthly 300 from 20 July; August failed on the 20th and was paid on the 23rd
  (recovered); September failed and never paid; Stripe cancelled her on 10 October for
  non-payment. Paid 300 + 300 = 600. Giving one and two months on, not three (20 October).
- dan: a one-time gift in June (which starts no cohort), then monthly 700 from 3 August;
  paid August, September, October: 2100.
- eve: monthly 400 USD from 25 July; paid July: 400.

July EUR = ada, ben, cleo: 3/3, 2/3, 1/3 still giving after 1, 2, 3 months; four months on
(5 November) nobody has been followed that long yet. Voluntary churn 1 (ben), failed-payment
churn 1 (cleo), recovered 1 (cleo), upgraded 1 (ada); revenue 2300 + 2000 + 600 = 4900, per
supporter 1633.33 → 1633.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from billing.cohorts.queries import cohorts
from billing.cohorts.schemas import COHORT_DIMENSIONS
from billing.db import build_engine, get_sessionmaker
from billing.migrate import upgrade
from billing.models import Payment
from billing.reports.params import parse_period
from tests.conftest import RUN_ID, database_url_named
from tests.reports_ledger import LedgerBuilder, api_key, at

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def build_ledger(db: Session) -> LedgerBuilder:
    """The ledger above, committed."""
    b = LedgerBuilder(db)
    b.pledge("ada", "ada", 500, "eur", "month", at(7, 5), campaign="spring", source="article")
    b.pledge("ben", "ben", 1000, "eur", "month", at(7, 10), campaign="spring")
    b.pledge("cleo", "cleo", 300, "eur", "month", at(7, 20), source="homepage")
    b.pledge("dan_gift", "dan", 2500, "eur", "once", at(6, 15), campaign="june")
    b.pledge("dan", "dan", 700, "eur", "month", at(8, 3), campaign="fall")
    b.pledge("eve", "eve", 400, "usd", "month", at(7, 25), campaign="spring")
    b.payment("dan_gift", "dan_gift", 2500, at(6, 15), fee=100, stripe_invoice_id=None)
    for key, months in (("ada", (7, 8, 9)), ("ben", (7, 8)), ("dan", (8, 9, 10))):
        day = b.ledger.pledges[key].created_at.day
        for month in months:
            amount = b.ledger.pledges[key].amount_minor
            b.payment(f"{key}_{month}", key, amount, at(month, day), fee=30)
    b.change("ada", at(9, 10), amount_minor=800)
    b.payment("ada_10", "ada", 800, at(10, 5), fee=30)
    b.change("ben", at(9, 1), status="canceled", canceled_at=at(9, 1),
             cancel_reason="cancellation_requested")  # fmt: skip
    b.payment("cleo_7", "cleo", 300, at(7, 20), fee=30)
    b.payment("cleo_8", "cleo", 300, at(8, 23), fee=30, failed_at=at(8, 20), attempt_count=2)
    b.payment("cleo_9", "cleo", 300, at(9, 20), fee=None, status="failed", failed_at=at(9, 20))
    b.change("cleo", at(9, 20), status="past_due")
    b.change("cleo", at(10, 10), status="canceled", canceled_at=at(10, 10),
             cancel_reason="payment_failed")  # fmt: skip
    b.payment("eve_7", "eve", 400, at(7, 25), fee=30)
    db.commit()
    return b


@pytest.fixture
def ledger(db: Session) -> None:
    build_ledger(db)


def by(db: Session, dimension: str, **period: Any) -> list[dict[str, Any]]:
    chosen = parse_period(period.get("from_", "2026-01-01"), "2026-12-31", period.get("currency"),
                          "UTC", 12)  # fmt: skip
    report = cohorts(db, period=chosen, by=dimension, as_of=AS_OF)
    return [row.model_dump() for row in report.rows]


def cohort(db: Session, month: str, currency: str = "eur") -> dict[str, Any]:
    return next(
        row for row in by(db, "month") if (row["cohort"], row["currency"]) == (month, currency)
    )


def test_monthly_cohorts_match_the_figures_worked_out_by_hand(db: Session, ledger: None) -> None:
    rows = {(row["cohort"], row["currency"]): row for row in by(db, "month")}

    assert set(rows) == {("2026-07", "eur"), ("2026-07", "usd"), ("2026-08", "eur")}
    july = rows["2026-07", "eur"]
    assert july["supporters"] == 3
    assert [july[f"retained_m{k}"] for k in range(1, 5)] == [3, 2, 1, None]
    assert [july[f"share_m{k}"] for k in range(1, 5)] == ["1.0000", "0.6667", "0.3333", None]
    assert (july["churned_voluntary"], july["churned_failed_payment"]) == (1, 1)
    assert (july["recovered"], july["upgraded"]) == (1, 1)
    assert (july["revenue_12m"], july["revenue_12m_per_supporter"]) == (4900, 1633)
    august = rows["2026-08", "eur"]
    # dan, followed two months (3 September, 3 October); his June gift starts no cohort.
    assert [august[f"retained_m{k}"] for k in range(1, 4)] == [1, 1, None]
    assert (august["supporters"], august["revenue_12m"]) == (1, 2100)
    usd = rows["2026-07", "usd"]
    assert [usd[f"share_m{k}"] for k in range(1, 5)] == ["1.0000", "1.0000", "1.0000", None]
    assert usd["revenue_12m_per_supporter"] == 400


def test_cohorts_by_campaign_and_source_follow_the_first_pledge(db: Session, ledger: None) -> None:
    campaigns = {(r["cohort"], r["currency"]): r["supporters"] for r in by(db, "campaign")}
    sources = {(r["cohort"], r["currency"]): r["supporters"] for r in by(db, "source")}

    assert campaigns == {("fall", "eur"): 1, ("spring", "eur"): 2, ("spring", "usd"): 1,
                         (None, "eur"): 1}  # fmt: skip
    assert sources == {("article", "eur"): 1, ("homepage", "eur"): 1, (None, "eur"): 2,
                       (None, "usd"): 1}  # fmt: skip
    # Only those who started in the period, only the currency asked for.
    assert [r["cohort"] for r in by(db, "month", from_="2026-08-01", currency="eur")] == ["2026-08"]


def test_a_reader_who_cancels_without_a_reason_left_voluntarily(db: Session, ledger: None) -> None:
    db.execute(
        text("UPDATE pledges SET status = 'canceled', canceled_at = :at, updated_at = :at"
             " WHERE stripe_subscription_id = 'sub_ada'"),
        {"at": at(10, 15)},
    )  # fmt: skip
    db.commit()

    july = cohort(db, "2026-07")

    assert (july["churned_voluntary"], july["churned_failed_payment"]) == (2, 1)


def test_cohort_route_roles_csv_and_bad_input(
    client: TestClient, db: Session, ledger: None
) -> None:
    finance = {"Authorization": f"Bearer {api_key(db, 'finance')}"}
    window = {"from": "2026-07-01", "to": "2026-08-31"}

    body = client.get("/v1/reports/cohorts", headers=finance, params=window).json()
    as_csv = client.get("/v1/reports/cohorts", headers=finance, params=window | {"format": "csv"})
    wrong = client.get("/v1/reports/cohorts", headers=finance, params={"by": "weekday"})

    assert [row["cohort"] for row in body["rows"]] == ["2026-07", "2026-07", "2026-08"]
    assert "email" not in as_csv.text and "ada" not in as_csv.text
    assert as_csv.text.splitlines()[0].startswith("cohort,currency,supporters,retained_m1,")
    assert wrong.status_code == 422 and "by must be" in wrong.json()["message"]
    assert client.get("/v1/reports/cohorts").status_code == 401


def test_the_heat_map_page_colours_each_share(
    client: TestClient, db: Session, ledger: None
) -> None:
    assert "api_key" in client.get("/reports/dashboard/cohorts").text  # the sign-in form
    client.cookies.set("pledges_reports_key", api_key(db, "finance"))

    page = client.get("/reports/dashboard/cohorts").text

    july = page.split('data-cohort="2026-07" data-currency="eur"')[1].split("</tr>")[0]
    # 3 of 3 after one month, 2 of 3 after two: the darkest step, then the seventh.
    assert '<td class="heat-10">100%</td><td class="heat-7">67%</td>' in july
    assert "ada" not in page


COLUMNS = (
    "reader_id, currency, started_at, campaign, source, article_url, churn, ended_at, recovered, "
    "upgraded, revenue_12m_minor"
)


def stored_supporters(db: Session) -> list[tuple[Any, ...]]:
    """The rows the triggers keep, once checked against the view recomputed from scratch."""
    db.commit()  # the triggers run as a change commits
    stored = db.execute(text(f"SELECT {COLUMNS} FROM cohort_supporters ORDER BY 1, 2")).all()
    recomputed = db.execute(text(f"SELECT {COLUMNS} FROM cohort_supporter_facts ORDER BY 1, 2"))
    assert stored == recomputed.all()
    return [tuple(row) for row in stored]


def test_changes_after_the_fact_reach_the_cohorts_as_a_recomputation_would(db: Session) -> None:
    b = build_ledger(db)
    assert len(stored_supporters(db)) == 5

    b.payment("eve_8", "eve", 400, at(8, 25), fee=30)
    stored_supporters(db)
    assert cohort(db, "2026-07", "usd")["revenue_12m"] == 800

    # Gross, as the revenue report counts it: the refund is subtracted there, not here.
    b.refund("dan_10_back", "dan_10", 700, at(10, 20), "succeeded")
    b.ledger.payments["dan_10"].status = "refunded"
    stored_supporters(db)
    assert cohort(db, "2026-08")["revenue_12m"] == 2100

    # ada cancels on her manage page without giving a reason: voluntary, after three months.
    b.change("ada", at(10, 15), status="canceled", canceled_at=at(10, 15))
    stored_supporters(db)
    july = cohort(db, "2026-07")
    assert (july["churned_voluntary"], july["churned_failed_payment"]) == (2, 1)
    assert [july[f"retained_m{k}"] for k in range(1, 4)] == [3, 2, 1]

    b.change("dan", at(10, 20), status="paused")  # a pause is not an end
    b.change("eve", at(9, 1), amount_minor=600)  # an upgrade, through the history trigger
    stored_supporters(db)
    august, usd = cohort(db, "2026-08"), cohort(db, "2026-07", "usd")
    assert (august["churned_voluntary"], august["retained_m2"], usd["upgraded"]) == (0, 1, 1)

    # cleo's unpaid September invoice paid late, in plain SQL: Stripe had already cancelled her
    # for non-payment, so still failed-payment churn, with 300 more revenue.
    db.execute(
        text("UPDATE payments SET status = 'paid', paid_at = :at WHERE stripe_invoice_id = :id"),
        {"at": at(10, 25), "id": "in_cleo_9"},
    )
    stored_supporters(db)
    july = cohort(db, "2026-07")
    assert (july["revenue_12m"], july["churned_failed_payment"]) == (5200, 1)

    # A pledge recorded late that started before his others: dan now started in May.
    b.pledge("dan_may", "dan", 500, "eur", "month", at(5, 2), campaign="may")
    b.change("dan_may", at(6, 2), status="canceled", canceled_at=at(6, 2))
    db.execute(text("DELETE FROM payments WHERE stripe_invoice_id = 'in_eve_8'"))
    stored_supporters(db)
    months = {(row["cohort"], row["currency"]): row["supporters"] for row in by(db, "month")}
    assert months == {("2026-05", "eur"): 1, ("2026-07", "eur"): 3, ("2026-07", "usd"): 1}
    assert cohort(db, "2026-07", "usd")["revenue_12m"] == 400

    kept = stored_supporters(db)
    db.execute(text("SELECT rebuild_cohort_supporters()"))
    assert stored_supporters(db) == kept


def test_two_transactions_changing_one_supporter_take_turns(db: Session) -> None:
    b = build_ledger(db)
    ada = b.ledger.pledges["ada"].id
    first, second = get_sessionmaker()(), get_sessionmaker()()
    try:
        # Different days: payments in one quarter hour wait for each other at the revenue rollup.
        for session, day in ((first, 20), (second, 21)):
            session.add(Payment(pledge_id=ada, stripe_invoice_id=f"in_ada_{day}", status="paid",
                                amount_minor=100, currency="eur", paid_at=at(10, day)))  # fmt: skip
            session.flush()
        # Run the first one's refresh now: it holds ada's lock until it commits.
        first.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        with ThreadPoolExecutor(1) as pool:
            committed = pool.submit(second.commit)
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            deadline = time.monotonic() + 30
            while not db.scalar(text(waiting)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not committed.done()
            first.commit()
            committed.result(timeout=30)
    finally:
        first.close()
        second.close()

    # The second refresh ran after the first committed, so it counts both payments.
    assert cohort(db, "2026-07")["revenue_12m"] == 4900 + 200
    stored_supporters(db)


def test_the_migration_fills_the_cohorts_of_a_ledger_written_before_it(
    db: Session, postgres_admin_url: str
) -> None:
    build_ledger(db)
    expected = {dimension: by(db, dimension) for dimension in COHORT_DIMENSIONS}
    name = f"pledges_cohort_backfill_{RUN_ID}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url_named(postgres_admin_url, name)
    engine = build_engine(url)
    try:
        upgrade(url, "0010_inbox_queue")
        with Session(engine) as before:
            build_ledger(before)
        upgrade(url)
        with Session(engine) as after:
            assert {dimension: by(after, dimension) for dimension in COHORT_DIMENSIONS} == expected
            assert len(stored_supporters(after)) == 5
    finally:
        engine.dispose()
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
