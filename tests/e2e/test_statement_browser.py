"""A reader opens the manage link from an email and downloads last year's giving statement."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import Payment, Pledge, Reader, Refund
from billing.reader_links import manage_token

pytestmark = pytest.mark.browser


def supporter_of_last_year(db: Session) -> tuple[uuid.UUID, int]:
    """A monthly supporter paid three times last calendar year, one payment partly refunded.

    The server under test runs on the real clock, so "last year" is real time's.
    """
    year = utcnow().year - 1
    reader = Reader(id=uuid.uuid4(), email="statement@example.org", name="Grace Hopper")
    db.add(reader)
    db.flush()
    pledge = Pledge(
        id=uuid.uuid4(), reader_id=reader.id, amount_minor=1500, currency="eur",
        interval="month", status="active", stripe_subscription_id="sub_statement_e2e",
    )  # fmt: skip
    db.add(pledge)
    db.flush()
    for month in (3, 4, 5):
        paid_at = datetime(year, month, 10, 9, tzinfo=UTC)
        payment = Payment(
            pledge_id=pledge.id, stripe_invoice_id=f"in_statement_e2e_{month}",
            status="paid", amount_minor=1500, currency="eur", paid_at=paid_at,
            created_at=paid_at, updated_at=paid_at,
        )  # fmt: skip
        db.add(payment)
        db.flush()
    db.add(
        Refund(
            payment_id=payment.id, stripe_refund_id="re_statement_e2e", amount_minor=500,
            currency="eur", status="succeeded", refunded_at=datetime(year, 6, 1, tzinfo=UTC),
        )
    )  # fmt: skip
    db.commit()
    return pledge.id, year


def test_reader_downloads_last_years_pdf_statement(
    page: Page, live_server: str, db: Session, tmp_path: Path
) -> None:
    pledge_id, year = supporter_of_last_year(db)

    page.goto(f"{live_server}/manage/{manage_token(pledge_id)}")
    statements = page.locator("#statements")
    expect(statements).to_contain_text(str(year))
    with page.expect_download() as download_info:
        statements.get_by_role("link", name="Statement (PDF)").click()
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    assert saved.name.startswith(f"giving-statement-S-{year}-")
    text = "\n".join(page.extract_text() for page in PdfReader(saved).pages)
    assert "Giving statement" in text
    assert f"Fiscal year {year}" in text
    assert "Grace Hopper, statement@example.org" in text
    # Three payments of €15.00, €5.00 refunded: €40.00 given.
    assert "€45.00" in text and "€5.00" in text and "€40.00" in text
