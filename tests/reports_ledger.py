"""A small ledger whose every report figure is worked out by hand in the tests that use it.

July to October 2026, EUR and USD, monthly, annual and one-time pledges; renewals, a partial and
a full refund, a failed refund, disputes won and lost, failures recovered, lost and still being
retried, a cancellation, a pause, an upgrade, a downgrade and a reader who came back.
Every change carries an explicit `updated_at`, which the history trigger records as its time.
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from billing.apikeys import create_api_key
from billing.models import Dispute, Payment, Pledge, Reader, Refund


def at(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@dataclass
class Ledger:
    pledges: dict[str, Pledge] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)


class LedgerBuilder:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.ledger = Ledger()
        self.readers: dict[str, Reader] = {}

    def reader(self, name: str) -> Reader:
        if name not in self.readers:
            reader = Reader(
                id=uuid.uuid4(), email=f"{name}@example.org", name=name.title(),
                created_at=at(6, 1), updated_at=at(6, 1),
            )  # fmt: skip
            self.session.add(reader)
            self.session.flush()
            self.readers[name] = reader
        return self.readers[name]

    def pledge(
        self, key: str, reader: str, amount: int, currency: str, interval: str, when: datetime,
        status: str = "active", **extra: Any,
    ) -> Pledge:  # fmt: skip
        pledge = Pledge(
            id=uuid.uuid4(), reader_id=self.reader(reader).id, amount_minor=amount,
            currency=currency, interval=interval, status=status, created_at=when,
            updated_at=when, activated_at=when if status == "active" else None,
            stripe_customer_id=f"cus_{reader}",
            stripe_subscription_id=None if interval == "once" else f"sub_{key}",
            stripe_payment_intent_id=f"pi_gift_{key}" if interval == "once" else None,
            **extra,
        )  # fmt: skip
        self.session.add(pledge)
        self.session.flush()
        self.ledger.pledges[key] = pledge
        return pledge

    def change(self, key: str, when: datetime, **values: Any) -> None:
        pledge = self.ledger.pledges[key]
        for name, value in values.items():
            setattr(pledge, name, value)
        pledge.updated_at = when
        self.session.flush()

    def payment(
        self, key: str, pledge_key: str, amount: int, when: datetime, fee: int | None,
        status: str = "paid", **extra: Any,
    ) -> Payment:  # fmt: skip
        pledge = self.ledger.pledges[pledge_key]
        values: dict[str, Any] = {
            "pledge_id": pledge.id, "stripe_invoice_id": f"in_{key}",
            "stripe_charge_id": f"ch_{key}" if status in ("paid", "refunded") else None,
            "stripe_subscription_id": pledge.stripe_subscription_id,
            "stripe_customer_id": pledge.stripe_customer_id, "status": status,
            "amount_minor": amount, "currency": pledge.currency, "fee_minor": fee,
            "net_minor": None if fee is None else amount - fee, "attempt_count": 1,
            "paid_at": when if status in ("paid", "refunded") else None,
            "created_at": when, "updated_at": when,
        }  # fmt: skip
        values.update(extra)
        payment = Payment(**values)
        self.session.add(payment)
        self.session.flush()
        self.ledger.payments[key] = payment
        return payment

    def refund(self, key: str, payment_key: str, amount: int, when: datetime, status: str) -> None:
        payment = self.ledger.payments[payment_key]
        self.session.add(
            Refund(
                payment_id=payment.id, stripe_refund_id=f"re_{key}", amount_minor=amount,
                currency=payment.currency, status=status, refunded_at=when,
            )
        )  # fmt: skip
        if status == "succeeded":
            payment.refunded_minor += amount
        self.session.flush()

    def dispute(self, key: str, payment_key: str, when: datetime, status: str) -> None:
        payment = self.ledger.payments[payment_key]
        self.session.add(
            Dispute(
                payment_id=payment.id, stripe_dispute_id=f"dp_{key}",
                amount_minor=payment.amount_minor, currency=payment.currency, status=status,
                opened_at=when, closed_at=when,
            )
        )  # fmt: skip
        payment.disputed_minor, payment.dispute_status = payment.amount_minor, status
        self.session.flush()


def seed_ledger(session: Session) -> Ledger:
    """The ledger, written in the order things happened, then committed."""
    b = LedgerBuilder(session)
    a1, a2 = "https://news.example/a1", "https://news.example/a2"
    b.pledge("p10", "rosa", 1000, "eur", "month", at(7, 1), source="homepage")
    b.payment("p10_jul", "p10", 1000, at(7, 1), fee=59)
    b.pledge("p1", "ada", 500, "eur", "month", at(7, 5),
             campaign="spring", source="article", article_url=a1)  # fmt: skip
    b.payment("p1_jul", "p1", 500, at(7, 5), fee=45)
    b.pledge("p4", "dan", 800, "usd", "month", at(7, 15), source="homepage")
    b.payment("p4_jul", "p4", 800, at(7, 15), fee=53)

    b.pledge("p3", "cleo", 1000, "usd", "month", at(8, 1), fee_cover_minor=60,
             campaign="fall", source="article", article_url=a2)  # fmt: skip
    b.payment("p3_aug", "p3", 1060, at(8, 1), fee=61)
    b.payment("p10_aug", "p10", 1000, at(8, 1), fee=59)
    b.payment("p1_aug", "p1", 500, at(8, 5), fee=45)
    b.pledge("p2", "ben", 6000, "eur", "year", at(8, 10),
             campaign="spring", source="newsletter", article_url=a1)  # fmt: skip
    b.payment("p2_aug", "p2", 6000, at(8, 10), fee=204)
    b.payment("p4_aug", "p4", 800, at(8, 15), fee=53)
    b.refund("p1_aug_partial", "p1_aug", 200, at(8, 20), "succeeded")
    b.dispute("p4_aug_won", "p4_aug", at(8, 25), "won")

    b.payment("p3_sep", "p3", 1060, at(9, 1), fee=61)
    b.payment("p10_sep", "p10", 1000, at(9, 1), fee=59)
    b.refund("p2_aug_full", "p2_aug", 6000, at(9, 2), "succeeded")
    b.ledger.payments["p2_aug"].status = "refunded"
    b.pledge("p5", "eve", 300, "eur", "month", at(9, 3), source="article")
    b.payment("p5_sep", "p5", 300, at(9, 3), fee=None)
    b.payment("p1_sep", "p1", 500, at(9, 5), fee=None)
    b.change("p10", at(9, 10), amount_minor=600)
    b.pledge("p8", "gus", 2500, "eur", "once", at(9, 12),
             campaign="fall", source="article", article_url=a2)  # fmt: skip
    b.payment("p8_gift", "p8", 2500, at(9, 12), fee=100, stripe_invoice_id=None,
              stripe_payment_intent_id="pi_gift_p8")  # fmt: skip
    b.dispute("p3_sep_lost", "p3_sep", at(9, 15), "lost")
    b.payment("p4_sep", "p4", 800, at(9, 15), fee=None, status="failed",
              failed_at=at(9, 15), attempt_count=4, failure_code="card_declined")  # fmt: skip
    b.change("p4", at(9, 15), status="past_due")
    b.change("p5", at(9, 20), status="canceled", canceled_at=at(9, 20))
    # 22:30 UTC on 30 September is already 1 October in Berlin.
    b.payment("p1_oct", "p1", 500, at(9, 30, 22, 30), fee=45)

    b.payment("p3_oct", "p3", 1060, at(10, 1), fee=61, failed_at=at(10, 1), attempt_count=2,
              paid_at=at(10, 4))  # fmt: skip
    b.change("p3", at(10, 1), status="past_due")
    b.payment("p10_oct", "p10", 600, at(10, 1), fee=None, status="failed",
              failed_at=at(10, 1), next_attempt_at=at(10, 8))  # fmt: skip
    b.change("p4", at(10, 1, 12), status="canceled", canceled_at=at(10, 1, 12))
    b.change("p3", at(10, 4), status="active")
    b.pledge("p6", "eve", 700, "eur", "month", at(10, 10, 9), status="pending",
             source="newsletter")  # fmt: skip
    b.change("p6", at(10, 10, 9, 5), status="active", activated_at=at(10, 10, 9, 5))
    b.payment("p6_oct", "p6", 700, at(10, 10, 9, 5), fee=40)
    b.refund("p6_oct_failed", "p6_oct", 100, at(10, 12), "failed")
    b.change("p1", at(10, 15), amount_minor=800)
    b.pledge("p9", "hal", 400, "eur", "month", at(10, 20), status="pending", source="article")
    b.change("p10", at(10, 25), status="paused")
    session.commit()
    return b.ledger


def api_key(session: Session, role: str) -> str:
    _row, key = create_api_key(session, role, name=f"{role} tests")
    session.commit()
    return key
