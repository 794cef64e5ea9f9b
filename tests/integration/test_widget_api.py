"""What the widget reads from the API before it draws the form."""

import gzip

import pytest
from fastapi.testclient import TestClient

from billing.db import reset_caches


def test_config_gives_limits_in_minor_units_and_the_fee_rule(
    client: TestClient, test_environment: dict[str, str]
) -> None:
    config = client.get("/v1/widget/config").json()

    assert config["publishable_key"] == test_environment["STRIPE_PUBLISHABLE_KEY"]
    assert config["stripe_js_url"] == f"{test_environment['STRIPE_API_BASE']}/js.stripe.com/v3/"
    assert config["currencies"][0] == {
        "code": "eur", "exponent": 2, "min_amount": 200, "max_amount": 1_000_000,
    }  # fmt: skip
    assert config["fee"] == {"basis_points": 290, "fixed_minor": 30}
    assert config["captcha"] is None


def test_widget_script_names_stripe_js_up_front_and_is_served_compressed(
    client: TestClient, test_environment: dict[str, str]
) -> None:
    response = client.get("/widget/widget.js", headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["content-encoding"] == "gzip"
    first_line = response.text.splitlines()[0]
    expected = f"{test_environment['STRIPE_API_BASE']}/js.stripe.com/v3/"
    assert first_line == f'window.ReaderPledges = {{stripeJs: "{expected}"}};'
    assert client.get("/widget/widget.css").status_code == 200


def test_widget_stays_under_10_kb_gzipped_with_english_and_loads_other_words_on_demand(
    client: TestClient,
) -> None:
    script = client.get("/widget/widget.js").content
    german = client.get("/widget/i18n/de.json")
    packed = {
        "widget.js": len(gzip.compress(script, 9)),
        "de.json": len(gzip.compress(german.content, 9)),
    }
    print(f"gzipped bytes: {packed}")

    assert packed["widget.js"] < 10 * 1024
    # Only English is built in; no other language's words ride along.
    assert "Поддержите" not in script.decode() and "Unterstützen" not in script.decode()
    assert german.status_code == 200
    assert german.headers["content-type"] == "application/json"
    assert german.headers["cache-control"] == "public, max-age=3600"
    assert german.json()["Support our journalism"] == "Unterstützen Sie unseren Journalismus"
    assert client.get("/widget/i18n/ru.json").json()["Thank you!"] == "Спасибо!"


def test_widget_words_exist_only_for_enabled_languages(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/widget/i18n/fr.json").status_code == 404
    assert client.get("/widget/i18n/en.json").json() == {}

    monkeypatch.setenv("LANGUAGES", "en,ru")
    reset_caches()
    try:
        assert client.get("/widget/i18n/de.json").status_code == 404
    finally:
        monkeypatch.undo()
        reset_caches()


def test_real_stripe_js_without_a_local_stripe(monkeypatch: pytest.MonkeyPatch) -> None:
    from billing.settings import Settings

    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    monkeypatch.delenv("STRIPE_JS_URL", raising=False)

    assert Settings(_env_file=None).stripe_js_url == "https://js.stripe.com/v3/"


def test_demo_article_is_not_served_in_production(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert 'data-campaign="demo"' in client.get("/demo").text

    monkeypatch.setenv("ENVIRONMENT", "production")
    reset_caches()
    try:
        from billing.app import create_app

        with TestClient(create_app()) as production:
            assert production.get("/demo").status_code == 404
    finally:
        monkeypatch.undo()
        reset_caches()
