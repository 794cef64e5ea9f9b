"""Time every finance report on a generated ledger of 1,000,000 pledges and 10,000,000 payments.

    .venv/bin/python benchmarks/reports_benchmark.py [--pledges N] [--payments N] [--keep]

Creates its own PostgreSQL database (dropped at the end unless --keep), fills it with
`generate_series` in a few statements, then runs each report several times and prints the median
time and its ratio to a plain `count(*)` over payments measured in the same run, so figures from
different machines can be compared.
"""

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DAYS = 3 * 365  # the ledger spans three years up to today

READERS_SQL = """
INSERT INTO readers (id, email, name, locale, created_at, updated_at)
SELECT md5('reader' || i)::uuid, 'reader' || i || '@example.org', 'Reader ' || i, 'en',
       now() - interval '1100 days', now() - interval '1100 days'
  FROM generate_series(1, {pledges}) AS i
"""

# Shares: 60% active, 4% past due, 2% paused, 30% cancelled, 3% pending, 1% failed;
# 80% monthly, 12% annual, 8% one-time; three currencies; 40 campaigns, 5000 articles.
PLEDGES_SQL = """
INSERT INTO pledges (id, reader_id, amount_minor, fee_cover_minor, currency, interval, status,
                     cover_fees, locale, source, campaign, article_url, stripe_customer_id,
                     stripe_subscription_id, created_at, updated_at, activated_at, canceled_at)
SELECT md5('pledge' || i)::uuid, md5('reader' || i)::uuid,
       200 + (i * 37 % 50) * 100, CASE WHEN i % 4 = 0 THEN 30 ELSE 0 END,
       (ARRAY['eur', 'usd', 'gbp'])[i % 3 + 1],
       CASE WHEN i % 100 < 80 THEN 'month' WHEN i % 100 < 92 THEN 'year' ELSE 'once' END,
       CASE WHEN i % 100 < 92 AND (i / 100) % 100 >= 40 THEN
                CASE WHEN (i / 100) % 100 < 44 THEN 'past_due'
                     WHEN (i / 100) % 100 < 46 THEN 'paused'
                     WHEN (i / 100) % 100 < 49 THEN 'pending'
                     WHEN (i / 100) % 100 < 50 THEN 'failed'
                     ELSE 'active' END
            WHEN i % 100 < 92 THEN 'canceled'
            ELSE 'active' END,
       i % 4 = 0, 'en',
       (ARRAY['article', 'homepage', 'newsletter', 'social', 'email'])[i % 5 + 1],
       CASE WHEN i % 2 = 0 THEN 'campaign-' || (i % 40) END,
       'https://news.example/article/' || (i % 5000),
       'cus_' || i, 'sub_' || i,
       created, created, created, NULL
  FROM (SELECT i, now() - (i % {days}) * interval '1 day'
                 - (i * 7919 % 86400) * interval '1 second' AS created
          FROM generate_series(1::bigint, {pledges}) AS i) AS g
"""

PLEDGE_FIXUPS_SQL = [
    "UPDATE pledges SET activated_at = NULL WHERE status IN ('pending', 'failed')",
    "UPDATE pledges SET canceled_at = least(now(), created_at + interval '120 days'),"
    " updated_at = least(now(), created_at + interval '120 days') WHERE status = 'canceled'",
]

# The history the trigger would have written: the activation, then the change that left the
# pledge in its present state.
HISTORY_SQL = """
INSERT INTO pledge_history (pledge_id, reader_id, changed_at, status, previous_status, interval,
                            currency, mrr_minor, mrr_delta_minor, movement)
SELECT id, reader_id, activated_at, 'active', 'pending', interval, currency,
       pledge_mrr_minor('active', interval, amount_minor + fee_cover_minor),
       pledge_mrr_minor('active', interval, amount_minor + fee_cover_minor),
       CASE WHEN interval <> 'once' THEN 'new' END
  FROM pledges WHERE activated_at IS NOT NULL
UNION ALL
SELECT id, reader_id, updated_at, status, 'active', interval, currency, 0,
       -pledge_mrr_minor('active', interval, amount_minor + fee_cover_minor),
       CASE WHEN interval <> 'once' THEN 'churned' END
  FROM pledges WHERE status IN ('canceled', 'paused')
"""

# 93% paid (3% of them after a failure), 4% failed, 2% refunded, 1% void; 2% fees unsettled.
PAYMENTS_SQL = """
INSERT INTO payments (pledge_id, stripe_invoice_id, stripe_charge_id, stripe_subscription_id,
                      stripe_customer_id, status, amount_minor, currency, fee_minor, net_minor,
                      refunded_minor, disputed_minor, attempt_count, next_attempt_at, failed_at,
                      paid_at, created_at, updated_at)
SELECT md5('pledge' || p)::uuid, 'in_' || j,
       CASE WHEN s < 95 THEN 'ch_' || j END, 'sub_' || p, 'cus_' || p,
       CASE WHEN s < 93 THEN 'paid' WHEN s < 95 THEN 'refunded' WHEN s < 99 THEN 'failed'
            ELSE 'void' END,
       amount, (ARRAY['eur', 'usd', 'gbp'])[p % 3 + 1],
       CASE WHEN s < 95 AND j % 50 <> 0 THEN amount * 29 / 1000 + 30 END,
       CASE WHEN s < 95 AND j % 50 <> 0 THEN amount - (amount * 29 / 1000 + 30) END,
       CASE WHEN s BETWEEN 93 AND 94 THEN amount ELSE 0 END, 0,
       CASE WHEN s >= 95 OR j % 33 = 0 THEN 1 + j % 4 ELSE 1 END,
       -- Stripe stops retrying within weeks: only recent failures still have a next attempt.
       CASE WHEN s BETWEEN 95 AND 98 AND j % 2 = 0 AND j % {days} < 21
            THEN created + interval '3 days' END,
       CASE WHEN s >= 95 OR (s < 93 AND j % 33 = 0) THEN created END,
       CASE WHEN s < 95 THEN created + CASE WHEN j % 33 = 0 THEN interval '3 days'
                                            ELSE interval '0' END END,
       created, created
  FROM (SELECT j, j % {pledges} + 1 AS p, j * 7 % 100 AS s,
               200 + ((j % {pledges} + 1) * 37 % 50) * 100 AS amount,
               now() - (j % {days}) * interval '1 day'
               - (j * 7919 % 86400) * interval '1 second' AS created
          FROM generate_series(1::bigint, {payments}) AS j) AS g
"""

REFUNDS_SQL = """
INSERT INTO refunds (payment_id, stripe_refund_id, amount_minor, currency, status, refunded_at,
                     created_at, updated_at)
SELECT id, 're_' || id, amount_minor, currency, 'succeeded', paid_at + interval '2 days',
       paid_at, paid_at
  FROM payments WHERE status = 'refunded'
"""

DISPUTES_SQL = """
INSERT INTO disputes (payment_id, stripe_dispute_id, amount_minor, currency, status, opened_at,
                      created_at, updated_at)
SELECT id, 'dp_' || id, amount_minor, currency,
       CASE WHEN id % 3 = 0 THEN 'won' ELSE 'lost' END, paid_at + interval '20 days',
       paid_at, paid_at
  FROM payments WHERE status = 'paid' AND id % 1000 = 7
"""


# One automatic payout a day per currency, two days after the money it pays out; every paid
# payment's charge, every refund and dispute is a balance transaction in the payout of its day.
PAYOUTS_SQL = """
INSERT INTO payouts (stripe_payout_id, amount_minor, currency, status, arrival_date, automatic,
                     stripe_created_at, stripe_state_at, transactions_loaded_at, created_at,
                     updated_at)
SELECT 'po_' || currency || '_' || to_char(day, 'YYYYMMDD'), 0, currency, 'paid',
       (day + interval '2 days')::date, true, day, day, day, day, day
  FROM generate_series(date_trunc('day', now() - interval '{days} days'),
                       date_trunc('day', now() + interval '30 days'), interval '1 day') AS day,
       unnest(ARRAY['eur', 'usd', 'gbp']) AS currency
"""

PAYOUT_TRANSACTIONS_SQL = """
INSERT INTO payout_transactions (payout_id, stripe_balance_transaction_id, type,
                                 reporting_category, source_id, amount_minor, fee_minor,
                                 net_minor, currency, stripe_created_at)
SELECT po.id, 'txn_' || source_id, type, category, source_id, amount, fee, amount - fee,
       lines.currency, at
  FROM (SELECT stripe_charge_id AS source_id, 'charge' AS type, 'charge' AS category,
               amount_minor AS amount, coalesce(fee_minor, 0) AS fee, currency, paid_at AS at
          FROM payments WHERE stripe_charge_id IS NOT NULL AND paid_at IS NOT NULL
        UNION ALL
        SELECT stripe_refund_id, 'refund', 'refund', -amount_minor, 0, currency, refunded_at
          FROM refunds
        UNION ALL
        SELECT stripe_dispute_id, 'adjustment', 'dispute', -amount_minor, 1500, currency,
               opened_at
          FROM disputes) AS lines
  JOIN payouts po ON po.stripe_payout_id = 'po_' || lines.currency || '_'
                                           || to_char(lines.at, 'YYYYMMDD')
"""

PAYOUT_AMOUNTS_SQL = """
UPDATE payouts SET amount_minor = sums.net
  FROM (SELECT payout_id, sum(net_minor) AS net FROM payout_transactions GROUP BY payout_id)
       AS sums
 WHERE payouts.id = sums.payout_id
"""


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def timed(label: str, action: Callable[[], Any]) -> None:
    started = time.perf_counter()
    action()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)


def load(url: str, pledges: int, payments: int) -> None:
    """Fill the ledger with index builds deferred to the end, as a bulk import would."""
    # Whole numbers only, so formatting them into the SQL is safe.
    params = {"pledges": int(pledges), "payments": int(payments), "days": DAYS}
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET maintenance_work_mem = '1GB'")
        connection.execute("SET synchronous_commit = off")
        # Triggers off while loading: history and rollup are written in one statement each below.
        connection.execute("SET session_replication_role = replica")
        rebuild = []
        for table in ("pledges", "payments", "payout_transactions"):
            rows = connection.execute(
                "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "WHERE c.conrelid = %s::regclass AND c.contype = 'u'", (table,)
            ).fetchall()  # fmt: skip
            for name, definition in rows:
                connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            indexes = connection.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
                "AND indexname NOT LIKE 'pk_%%'", (table,)
            ).fetchall()  # fmt: skip
            for name, definition in indexes:
                connection.execute(f'DROP INDEX "{name}"')
                rebuild.append(definition)
        timed("readers", lambda: connection.execute(READERS_SQL.format(**params)))
        timed("pledges", lambda: connection.execute(PLEDGES_SQL.format(**params)))
        for statement in PLEDGE_FIXUPS_SQL:
            connection.execute(statement)
        timed("pledge history", lambda: connection.execute(HISTORY_SQL))
        timed("payments", lambda: connection.execute(PAYMENTS_SQL.format(**params)))
        timed("refunds", lambda: connection.execute(REFUNDS_SQL))
        timed("disputes", lambda: connection.execute(DISPUTES_SQL))
        timed("revenue rollup", lambda: connection.execute("SELECT rebuild_revenue_rollup()"))
        timed("payouts", lambda: connection.execute(PAYOUTS_SQL.format(**params)))
        timed("payout transactions", lambda: connection.execute(PAYOUT_TRANSACTIONS_SQL))
        connection.execute(PAYOUT_AMOUNTS_SQL)

        def build_indexes() -> None:
            for statement in rebuild:
                connection.execute(statement)

        timed("indexes", build_indexes)
        # After the indexes: the cohort view reads each supporter's pledges by reader.
        timed("cohort supporters", lambda: connection.execute("SELECT rebuild_cohort_supporters()"))
        timed("vacuum analyze", lambda: connection.execute("VACUUM ANALYZE"))


def measure(action: Callable[[], Any], repeat: int) -> float:
    action()  # warm the cache and the plan once, as a dashboard in use would be
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_reports(repeat: int) -> None:
    from billing.cohorts import queries as cohort_queries
    from billing.cohorts.schemas import COHORT_DIMENSIONS
    from billing.db import get_sessionmaker
    from billing.payouts import service as payout_service
    from billing.payouts.exports import LAYOUTS, JournalLine, csv_export
    from billing.reports import lists, queries
    from billing.reports.auth import Principal
    from billing.reports.params import Period, parse_period
    from billing.settings import get_settings

    today = datetime.now(UTC).date()
    last_month_end = today.replace(day=1) - timedelta(days=1)
    last_month, last_month_eur = (
        parse_period(last_month_end.replace(day=1).isoformat(), last_month_end.isoformat(),
                     currency, "UTC", 1)
        for currency in (None, "eur")
    )  # fmt: skip
    year = parse_period(None, None, None, "UTC", 12)
    year_eur = parse_period(None, None, "eur", "UTC", 12)
    year_berlin = parse_period(None, None, None, "Europe/Berlin", 12)
    finance = Principal(key_id=0, role="finance")
    one_payout = f"po_eur_{last_month_end:%Y%m%d}"

    def consume(lines: Iterable[JournalLine], layout: str) -> int:
        """Every CSV byte an export would send."""
        return sum(len(chunk) for chunk in csv_export(lines, layout, get_settings()))

    def first_page(kind: str, **filters: Any) -> Callable[[Session], Any]:
        values = {
            "status": None,
            "currency": None,
            "interval": None,
            "campaign": None,
            "email": None,
            "from_value": None,
            "to_value": None,
            "timezone": "UTC",
        }
        values.update(filters)
        chosen = lists.ListFilters(**values)
        if kind == "pledges":
            return lambda s: lists.pledge_page(
                s, lists.pledge_statement(chosen, finance, None), finance, 100
            )
        return lambda s: lists.payment_page(s, lists.payment_statement(chosen, finance, None),
                                            finance, 100)  # fmt: skip

    def payout_export(layout: str) -> Callable[[Session], Any]:
        return lambda s: consume(
            payout_service.payout_journal(s, stripe_payout_id=one_payout, timezone="UTC")[1],
            layout,
        )

    def month_export(layout: str, month: Period) -> Callable[[Session], Any]:
        return lambda s: sum(
            len(chunk)
            for chunk in payout_service.month_export(
                period=month, layout=layout, settings=get_settings()
            )
        )

    def cohorts_by(dimension: str) -> Callable[[Session], Any]:
        return lambda s: cohort_queries.cohorts(s, period=year, by=dimension)

    cases: list[tuple[str, Callable[[Session], Any]]] = [
        ("summary, last month", lambda s: queries.summary(s, last_month)),
        ("summary, 12 months", lambda s: queries.summary(s, year)),
        ("revenue, last month by day", lambda s: queries.revenue(s, last_month, "day")),
        ("revenue, 12 months by month", lambda s: queries.revenue(s, year, "month")),
        ("revenue, 12 months, EUR only", lambda s: queries.revenue(s, year_eur, "month")),
        ("revenue, 12 months, Europe/Berlin", lambda s: queries.revenue(s, year_berlin, "month")),
        ("movement, 12 months", lambda s: queries.movement(s, year)),
        ("recovery, 12 months", lambda s: queries.recovery(s, year)),
        ("attribution, last month", lambda s: queries.attribution(s, last_month)),
        ("attribution, 12 months", lambda s: queries.attribution(s, year)),
        ("pledges list, first page", first_page("pledges")),
        ("payments list, first page", first_page("payments")),
        ("payments list, failed EUR", first_page("payments", status="failed", currency="eur")),
        ("payments list, campaign", first_page("payments", campaign="campaign-8")),
        # Issue 13: payouts, exports and cohorts.
        ("payouts, last month", lambda s: payout_service.payout_report(s, period=last_month)),
        ("payout detail, one payout", lambda s: payout_service.payout_detail(
            s, stripe_payout_id=one_payout, caller=finance)),
    ]  # fmt: skip
    cases += [(f"payout export, {layout}", payout_export(layout)) for layout in LAYOUTS]
    # xero and qbo are statements of one account, so of one currency.
    cases += [
        ("month export, journal, last month", month_export("journal", last_month)),
        *((f"month export, {layout}, EUR, last month", month_export(layout, last_month_eur))
          for layout in LAYOUTS),
        *((f"cohorts by {by}, 12 months", cohorts_by(by)) for by in COHORT_DIMENSIONS),
    ]  # fmt: skip
    with get_sessionmaker()() as session:
        payments = session.scalar(text("SELECT count(*) FROM payments"))
        pledges = session.scalar(text("SELECT count(*) FROM pledges"))
        print(f"\nledger: {pledges:,} pledges, {payments:,} payments; median of {repeat} runs")
        baseline = measure(lambda: session.scalar(text("SELECT count(*) FROM payments")), repeat)
        print(f"{'count(*) over payments (baseline)':40} {baseline * 1000:9.1f} ms   1.00")
        for label, report in cases:
            seconds = measure(lambda report=report: report(session), repeat)  # type: ignore[misc]
            print(f"{label:40} {seconds * 1000:9.1f} ms  {seconds / baseline:5.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pledges", type=int, default=1_000_000)
    parser.add_argument("--payments", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()

    name = f"pledges_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)
    print(f"database {name}")
    try:
        os.environ["DATABASE_URL"] = url
        from billing.db import reset_caches
        from billing.migrate import upgrade

        reset_caches()
        upgrade(url)
        load(url, args.pledges, args.payments)
        run_reports(args.repeat)
    finally:
        from billing.db import reset_caches

        reset_caches()
        if args.keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped database {name}")


if __name__ == "__main__":
    main()
