"""The finance dashboard: sign-in with an API key, the month's figures, CSV links that work."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.reports_ledger import Ledger, api_key, seed_ledger


@pytest.fixture
def ledger(db: Session) -> Ledger:
    return seed_ledger(db)


def sign_in(client: TestClient, key: str) -> None:
    response = client.post(
        "/reports/dashboard/session", data={"api_key": key}, follow_redirects=False
    )
    assert response.status_code == 303
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=strict" in response.headers["set-cookie"].lower()


def test_dashboard_without_a_key_shows_the_sign_in_form(client: TestClient) -> None:
    response = client.get("/reports/dashboard")

    assert response.status_code == 200
    assert 'name="api_key"' in response.text
    assert "Finance dashboard" not in response.text


def test_a_wrong_key_is_refused_on_the_sign_in_form(client: TestClient, db: Session) -> None:
    response = client.post("/reports/dashboard/session", data={"api_key": "rp_guess"})

    assert response.status_code == 401
    assert "This API key is not valid or has been revoked." in response.text
    assert 'name="api_key"' in client.get("/reports/dashboard").text


def test_dashboard_answers_what_we_raised_last_month_net_by_currency(
    client: TestClient, db: Session, ledger: Ledger
) -> None:
    sign_in(client, api_key(db, "finance"))

    page = client.get("/reports/dashboard", params={"month": "2026-10"})

    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert '<dd data-figure="active_pledges">4</dd>' in html
    assert '<dd data-figure="cancelled_pledges">1</dd>' in html
    assert '<dd data-figure="churn_rate">0.2000</dd>' in html
    assert '<td data-figure="mrr">€20.00</td>' in html
    assert '<td data-figure="mrr">$10.60</td>' in html
    assert '<td data-figure="net">€6.60</td>' in html
    assert '<td data-figure="net">$9.99</td>' in html
    assert '<td data-figure="reactivated_count">1</td>' in html
    assert "spring" in html


def test_dashboard_csv_links_download_with_the_session(
    client: TestClient, db: Session, ledger: Ledger
) -> None:
    sign_in(client, api_key(db, "finance"))
    page = client.get("/reports/dashboard", params={"month": "2026-10"}).text

    link = page.split('href="/v1/reports/revenue?')[1].split('"')[0].replace("&amp;", "&")
    response = client.get(f"/v1/reports/revenue?{link}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "2026-10-01,eur,1,700,0,0,40,0,660" in response.text


def test_signing_out_ends_the_dashboard_session(
    client: TestClient, db: Session, ledger: Ledger
) -> None:
    sign_in(client, api_key(db, "admin"))
    assert "Finance dashboard" in client.get("/reports/dashboard").text

    client.post("/reports/dashboard/sign-out", follow_redirects=False)

    assert "Finance dashboard" not in client.get("/reports/dashboard").text
    assert client.get("/v1/reports/summary").status_code == 401


def test_a_bad_month_is_explained(client: TestClient, db: Session) -> None:
    sign_in(client, api_key(db, "finance"))

    response = client.get("/reports/dashboard", params={"month": "October"})

    assert response.status_code == 422
    assert "month must look like 2026-10." in response.text
