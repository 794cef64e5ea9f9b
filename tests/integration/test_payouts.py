"""Payouts from signed payout events, their balance transactions from a local stand-in for
Stripe, tied out against a ledger built by hand: every figure below is worked out in comments."""

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Payout, PayoutTransaction
from tests.payout_stripe import (
    FakeStripe,
    charge_transaction,
    payout,
    payout_transaction,
    serving,
    transaction,
)
from tests.reports_ledger import LedgerBuilder, api_key, at
from tests.stripe_events import event, post_event, stored_event
from webhooks.processing import process

OCT_1 = int(at(10, 1, 0).timestamp())
OCT_3 = int(at(10, 3, 0).timestamp())


@pytest.fixture
def stripe() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
def finance(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'finance')}"}


@pytest.fixture
def admin(db: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key(db, 'admin')}"}


@pytest.fixture
def ledger(db: Session) -> Iterator[LedgerBuilder]:
    """Three September gifts: ch_a 500 (fee 45), ch_b 1000 (fee 59), ch_c 5000 (fee 175); a
    200 refund of ch_a and a lost dispute of ch_b."""
    b = LedgerBuilder(db)
    b.pledge("pa", "ada", 500, "eur", "month", at(9, 1))
    b.pledge("pb", "ben", 1000, "eur", "month", at(9, 2))
    b.pledge("pc", "cleo", 5000, "eur", "month", at(9, 3))
    b.payment("a", "pa", 500, at(9, 1), fee=45)
    b.payment("b", "pb", 1000, at(9, 2), fee=59)
    b.payment("c", "pc", 5000, at(9, 3), fee=175)
    b.refund("a", "a", 200, at(9, 20), "succeeded")
    b.dispute("b", "b", at(9, 21), "lost")
    db.commit()
    yield b


def deliver_payout(
    client: TestClient, db: Session, stripe: FakeStripe, document: dict[str, Any], kind: str
) -> str:
    """Post the signed payout event, then process it with the stand-in as Stripe."""
    signed = event(kind, document, created=document["created"] + 60)
    assert post_event(client, signed).status_code == 200
    with serving(stripe) as reader:
        outcome = process(stored_event(db, signed["id"]).id, reader)
    assert outcome.status == "handled", outcome
    return str(signed["id"])


def report(client: TestClient, headers: dict[str, str], **params: Any) -> Any:
    response = client.get(
        "/v1/reports/payouts", headers=headers, params={"from": "2026-10-01", "to": "2026-10-31"}
        | params,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def test_a_payout_of_two_gifts_ties_out_and_exports_line_by_line(
    client: TestClient, db: Session, ledger: LedgerBuilder, stripe: FakeStripe,
    finance: dict[str, str],
) -> None:  # fmt: skip
    # (500 - 45) + (1000 - 59) = 1396 reaches the bank.
    stripe.balance_transactions["po_tie"] = [
        charge_transaction("ch_a", 500, 45, OCT_1 - 86400),
        charge_transaction("ch_b", 1000, 59, OCT_1 - 86400),
        payout_transaction("po_tie", 1396, OCT_1),
    ]
    document = payout("po_tie", 1396, status="in_transit", arrival=OCT_3, created=OCT_1)
    deliver_payout(client, db, stripe, document, "payout.created")
    deliver_payout(client, db, stripe, payout("po_tie", 1396, arrival=OCT_3, created=OCT_1),
                   "payout.paid")  # fmt: skip

    body = report(client, finance)

    assert body["rows"] == [
        {
            "stripe_payout_id": "po_tie", "status": "paid", "arrival_date": "2026-10-03",
            "currency": "eur", "amount": 1396, "transactions": 2, "gifts": 1500, "fees": 104,
            "refunds": 0, "disputes": 0, "sum_of_parts": 1396, "difference": 0,
            "unmatched_transactions": 0, "unmatched_net": 0, "ties_out": True,
        }
    ]  # fmt: skip
    assert body["issues"] == []
    # Loaded once per event, never twice.
    assert db.scalar(select(Payout.status)) == "paid"
    assert len(db.scalars(select(PayoutTransaction)).all()) == 3

    xero = client.get("/v1/reports/payouts/po_tie/export", headers=finance,
                      params={"layout": "xero"})  # fmt: skip
    assert xero.status_code == 200, xero.text
    rows = list(csv.reader(io.StringIO(xero.text)))
    assert rows[0] == ["Date", "Amount", "Payee", "Description", "Reference", "AccountCode"]
    assert [(r[0], r[1], r[4], r[5]) for r in rows[1:]] == [
        ("2026-09-30", "5.00", "ch_a", "4000 Reader gifts"),
        ("2026-09-30", "-0.45", "ch_a", "6100 Payment processing fees"),
        ("2026-09-30", "10.00", "ch_b", "4000 Reader gifts"),
        ("2026-09-30", "-0.59", "ch_b", "6100 Payment processing fees"),
        ("2026-10-03", "-13.96", "po_tie", "1200 Bank"),
    ]
    journal = client.get("/v1/reports/payouts/po_tie/export", headers=finance)
    lines = list(csv.DictReader(io.StringIO(journal.text)))
    assert len(lines) == 10  # two sides of five entries
    debits = sum(int(line["debit"].replace(".", "") or 0) for line in lines)
    credits = sum(int(line["credit"].replace(".", "") or 0) for line in lines)
    assert debits == credits == 500 + 45 + 1000 + 59 + 1396
    qbo = client.get("/v1/reports/payouts/po_tie/export", headers=finance,
                     params={"layout": "qbo"})  # fmt: skip
    assert qbo.text.splitlines()[:2] == ["Date,Description,Amount",
                                         "09/30/2026,Reader gift (EUR) ch_a,5.00"]  # fmt: skip


def test_a_payout_missing_a_transaction_is_flagged_not_balanced(
    client: TestClient, db: Session, ledger: LedgerBuilder, stripe: FakeStripe,
    finance: dict[str, str], admin: dict[str, str],
) -> None:  # fmt: skip
    # Stripe says 1396 went out, but the list we get holds ch_a (455 net) and a charge the
    # ledger has never heard of (300, fee 30): ch_b's 941 is missing.
    stripe.balance_transactions["po_short"] = [
        charge_transaction("ch_a", 500, 45, OCT_1 - 86400),
        charge_transaction("ch_stranger", 300, 30, OCT_1 - 86400),
        payout_transaction("po_short", 1396, OCT_1),
    ]
    deliver_payout(client, db, stripe, payout("po_short", 1396, arrival=OCT_3, created=OCT_1),
                   "payout.paid")  # fmt: skip

    body = report(client, finance)

    row = body["rows"][0]
    assert (row["sum_of_parts"], row["difference"], row["ties_out"]) == (455, 941, False)
    assert (row["unmatched_transactions"], row["unmatched_net"]) == (1, 270)
    reasons = [issue["reason"] for issue in body["issues"]]
    assert reasons == [
        "charge ch_stranger: not in the ledger",
        "the ledger's parts add up to 455, 941 short of the payout after the unmatched lines",
    ]
    refused = client.get("/v1/reports/payouts/po_short/export", headers=finance)
    assert refused.status_code == 409
    assert "does not tie out" in refused.json()["message"]
    detail = client.get("/v1/reports/payouts/po_short", headers=admin).json()
    matched = {line["source_id"]: line["matched"] for line in detail["lines"]}
    assert matched == {"ch_a": "payment", "ch_stranger": None, "po_short": "payout"}
    emails = {line["source_id"]: line["reader_email"] for line in detail["lines"]}
    assert emails["ch_a"] == "ada@example.org"
    finance_detail = client.get("/v1/reports/payouts/po_short", headers=finance).json()
    assert all("reader_email" not in line for line in finance_detail["lines"])
    window = {"from": "2026-10-01", "to": "2026-10-31", "format": "csv"}
    as_csv = client.get("/v1/reports/payouts", headers=finance, params=window)
    assert as_csv.text.splitlines()[1].startswith("po_short,paid,2026-10-03,eur,1396,2,500,")


def test_a_payout_with_a_refund_and_a_dispute_ties_out(
    client: TestClient, db: Session, ledger: LedgerBuilder, stripe: FakeStripe,
    finance: dict[str, str],
) -> None:  # fmt: skip
    # ch_c 5000 - 175, the 200 refund of ch_a, ch_b's dispute 1000 plus Stripe's 1500 fee:
    # 4825 - 200 - 2500 = 2125.
    stripe.balance_transactions["po_mixed"] = [
        charge_transaction("ch_c", 5000, 175, OCT_1 - 86400),
        transaction("txn_re_a", "re_a", -200, 0, kind="refund", category="refund",
                    created=OCT_1 - 3600),
        transaction("txn_dp_b", "dp_b", -1000, 1500, kind="adjustment", category="dispute",
                    created=OCT_1 - 3600),
        payout_transaction("po_mixed", 2125, OCT_1),
    ]  # fmt: skip
    deliver_payout(client, db, stripe, payout("po_mixed", 2125, arrival=OCT_3, created=OCT_1),
                   "payout.paid")  # fmt: skip

    row = report(client, finance)["rows"][0]

    assert row == row | {
        "gifts": 5000, "fees": 175 + 1500, "refunds": 200, "disputes": 1000,
        "sum_of_parts": 2125, "difference": 0, "ties_out": True, "transactions": 3,
    }  # fmt: skip
    journal = client.get("/v1/reports/payouts/po_mixed/export", headers=finance,
                         params={"layout": "xero"})  # fmt: skip
    amounts = [r[1] for r in list(csv.reader(io.StringIO(journal.text)))[1:]]
    # In the order Stripe moved the money: the gift, then the dispute and the refund.
    assert amounts == ["50.00", "-1.75", "-10.00", "-15.00", "-2.00", "-21.25"]


def test_a_failed_payout_is_listed_with_its_reason_and_loses_its_transactions(
    client: TestClient, db: Session, ledger: LedgerBuilder, stripe: FakeStripe,
    finance: dict[str, str],
) -> None:  # fmt: skip
    stripe.balance_transactions["po_bounced"] = [charge_transaction("ch_a", 500, 45, OCT_1)]
    deliver_payout(client, db, stripe, payout("po_bounced", 455, arrival=OCT_3, created=OCT_1),
                   "payout.paid")  # fmt: skip
    failed = payout("po_bounced", 455, status="failed", arrival=OCT_3, created=OCT_1)
    failed["failure_code"] = "account_closed"
    deliver_payout(client, db, stripe, failed, "payout.failed")
    # A late copy of the older news changes nothing.
    late = event("payout.paid", payout("po_bounced", 455, arrival=OCT_3, created=OCT_1),
                 created=OCT_1 + 10)  # fmt: skip
    post_event(client, late)
    with serving(stripe) as reader:
        process(stored_event(db, late["id"]).id, reader)

    body = report(client, finance)

    assert body["rows"][0]["status"] == "failed" and body["rows"][0]["ties_out"] is False
    assert body["issues"][0]["reason"] == "payout failed (account_closed)"
    assert db.scalars(select(PayoutTransaction)).all() == []


def test_payout_reports_refuse_bad_input_and_strangers(
    client: TestClient, db: Session, finance: dict[str, str]
) -> None:
    assert client.get("/v1/reports/payouts").status_code == 401
    bad = client.get("/v1/reports/payouts", headers=finance, params={"from": "October"})
    assert bad.status_code == 422 and "from" in bad.json()["message"]
    assert client.get("/v1/reports/payouts/po_nobody", headers=finance).status_code == 404
    layout = client.get("/v1/reports/journal", headers=finance,
                        params={"month": "2026-10", "layout": "sage"})  # fmt: skip
    assert layout.status_code == 422 and "layout" in layout.json()["message"]
    month = client.get("/v1/reports/journal", headers=finance, params={"month": "10/2026"})
    assert month.status_code == 422
    currency = client.get("/v1/reports/journal", headers=finance,
                          params={"month": "2026-10", "layout": "xero"})  # fmt: skip
    assert currency.status_code == 422 and "currency" in currency.json()["message"]
