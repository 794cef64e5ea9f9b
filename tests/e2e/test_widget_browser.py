"""A reader pledging from the widget in headless Chromium, against `pledges serve` + localstripe."""

import re

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Pledge
from billing.reader_links import UPGRADE_SALT, pledge_id_from_token
from tests.e2e.conftest import ArticleSite

pytestmark = pytest.mark.browser

VISA = "4242424242424242"
DECLINED_ON_SETUP = "4000000000000002"
THREE_DS_ALWAYS = "4000002760003184"
THREE_DS_ON_SETUP = "4000002500003155"


def fill_card(page: Page, number: str) -> None:
    card = page.locator(".rp-card")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("10115")


def open_widget(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator(".rp-widget[data-ready=true]")).to_be_visible()


def pledges(db: Session) -> list[Pledge]:
    db.expire_all()
    return list(db.scalars(select(Pledge)))


def test_reader_pledges_monthly_with_a_card_and_sees_the_thank_you(
    page: Page, live_server: str, db: Session
) -> None:
    open_widget(page, f"{live_server}/demo")

    page.get_by_label("Monthly").check()
    page.get_by_label("€10").check()
    page.get_by_label("Email").fill("ada@example.org")
    page.get_by_label("Name (optional)").fill("Ada Reader")
    expect(page.get_by_role("button", name="Pledge €10 a month")).to_be_visible()
    fill_card(page, VISA)
    page.get_by_role("button", name="Pledge €10 a month").click()

    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    expect(page.locator(".rp-thanks")).to_contain_text("€10 a month")
    # Nothing sticks out sideways on a phone-sized screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    [pledge] = pledges(db)
    assert (pledge.status, pledge.amount_minor, pledge.currency, pledge.interval) == (
        "active", 1000, "eur", "month",
    )  # fmt: skip
    assert pledge.campaign == "demo" and pledge.article_url == f"{live_server}/demo"


def subscriptions_in_stripe(stripe_api: httpx.Client) -> list[dict[str, object]]:
    return list(stripe_api.get("/v1/subscriptions", params={"limit": 100}).json()["data"])


def test_declined_card_shows_the_error_and_starts_no_pledge(
    page: Page, live_server: str, db: Session, stripe_api: httpx.Client
) -> None:
    subscriptions_before = len(subscriptions_in_stripe(stripe_api))
    open_widget(page, f"{live_server}/demo")
    page.get_by_label("Email").fill("declined@example.org")
    fill_card(page, DECLINED_ON_SETUP)
    page.locator(".rp-submit").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Your card was declined. Please try another card or contact your bank."
    )
    expect(page.locator(".rp-submit")).to_be_enabled()
    assert all(pledge.status == "pending" for pledge in pledges(db))
    assert len(subscriptions_in_stripe(stripe_api)) == subscriptions_before

    # The same form then goes through with another card, on the same pledge.
    fill_card(page, VISA)
    page.locator(".rp-submit").click()
    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    assert [p.status for p in pledges(db)] == ["active"]


def test_3d_secure_card_completes_the_challenge(page: Page, live_server: str, db: Session) -> None:
    open_widget(page, f"{live_server}/demo")
    page.get_by_label("Email").fill("secure@example.org")
    fill_card(page, THREE_DS_ALWAYS)
    page.locator(".rp-submit").click()

    # localstripe's stand-in asks once for the card and once for the first payment.
    page.get_by_role("button", name="Complete authentication").click()
    page.get_by_role("button", name="Complete authentication").click()

    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    [pledge] = pledges(db)
    assert pledge.status == "active" and pledge.stripe_subscription_id


def test_3d_secure_refused_shows_an_error_and_the_pledge_waits_for_another_card(
    page: Page, live_server: str, db: Session
) -> None:
    open_widget(page, f"{live_server}/demo")
    page.get_by_label("Email").fill("secure@example.org")
    fill_card(page, THREE_DS_ALWAYS)
    page.locator(".rp-submit").click()
    page.get_by_role("button", name="Complete authentication").click()
    page.get_by_role("button", name="Fail authentication").click()

    expect(page.get_by_role("alert")).not_to_be_empty()
    expect(page.get_by_role("heading", name="Thank you!")).to_have_count(0)
    [pledge] = pledges(db)
    assert (pledge.status, pledge.card_attempts, pledge.stripe_subscription_id) == (
        "pending",
        1,
        None,
    )


def test_custom_amount_below_the_minimum_is_refused_in_the_page_and_by_the_api(
    page: Page, live_server: str, db: Session
) -> None:
    open_widget(page, f"{live_server}/demo")
    page.get_by_label("Other amount", exact=True).first.check()
    page.locator("input[name=custom]").fill("1,50")
    page.get_by_label("Email").fill("small@example.org")
    fill_card(page, VISA)
    page.locator(".rp-submit").click()

    expect(page.get_by_role("alert")).to_have_text("The smallest pledge is €2.")
    expect(page.locator("input[name=custom]")).to_have_attribute("aria-invalid", "true")
    assert pledges(db) == []
    response = httpx.post(
        f"{live_server}/v1/pledges",
        json={"email": "small@example.org", "amount": 150, "currency": "eur"},
    )
    assert response.status_code == 422
    assert response.json()["message"] == "The smallest pledge is €2.00."
    assert pledges(db) == []


def test_widget_on_another_allowed_origin_takes_a_pledge(
    page: Page, allowed_site: ArticleSite, db: Session
) -> None:
    open_widget(page, allowed_site.url(locale="ru", currency="usd", interval="once"))
    expect(page.get_by_role("heading", name="Поддержите нашу журналистику")).to_be_visible()
    page.get_by_label("Эл. почта").fill("reader@example.org")
    fill_card(page, VISA)
    page.locator(".rp-submit").click()

    expect(page.get_by_role("heading", name="Спасибо!")).to_be_visible()
    [pledge] = pledges(db)
    assert (pledge.status, pledge.interval, pledge.currency, pledge.locale) == (
        "active", "once", "usd", "ru",
    )  # fmt: skip
    assert pledge.article_url == f"{allowed_site.origin}/article"
    # The gift's thank-you offers its signed "make it monthly" page.
    monthly = page.get_by_role("link", name="Поддерживать ежемесячно")
    href = monthly.get_attribute("href") or ""
    assert pledge_id_from_token(href.rsplit("/monthly/", 1)[1], salt=UPGRADE_SALT) == pledge.id


def test_widget_in_german_loads_its_words_on_demand_and_takes_a_pledge(
    page: Page, allowed_site: ArticleSite, live_server: str, db: Session
) -> None:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    open_widget(page, allowed_site.url(locale="de"))

    expect(page.locator(".rp-widget")).to_have_attribute("lang", "de")
    expect(
        page.get_by_role("heading", name="Unterstützen Sie unseren Journalismus")
    ).to_be_visible()
    button = page.get_by_role("button", name=re.compile(r"^Mit 5\s€ im Monat unterstützen$"))
    expect(button).to_be_visible()
    page.get_by_label("E-Mail").fill("leserin@example.org")
    page.get_by_label("Name (optional)").fill("Lena Leserin")
    fill_card(page, DECLINED_ON_SETUP)
    page.locator(".rp-submit").click()
    # The refusal comes from the server, in the widget's language.
    expect(page.get_by_role("alert")).to_contain_text("Ihre Karte wurde abgelehnt.")

    fill_card(page, VISA)
    page.locator(".rp-submit").click()
    expect(page.get_by_role("heading", name="Vielen Dank!")).to_be_visible()
    expect(page.locator(".rp-thanks")).to_contain_text("ist aktiv")
    [pledge] = pledges(db)
    assert (pledge.status, pledge.locale) == ("active", "de")
    assert [url for url in asked if "/widget/i18n/" in url] == [
        f"{live_server}/widget/i18n/de.json"
    ]


def test_widget_in_a_language_we_do_not_ship_speaks_english(
    page: Page, allowed_site: ArticleSite
) -> None:
    open_widget(page, allowed_site.url(locale="fr"))

    expect(page.locator(".rp-widget")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Support our journalism")).to_be_visible()


def test_widget_on_a_disallowed_origin_is_refused(
    page: Page, foreign_site: ArticleSite, live_server: str, db: Session
) -> None:
    page.goto(foreign_site.url())

    expect(page.locator(".rp-widget[data-ready=error]")).to_have_text(
        "Pledges are not available on this site."
    )
    expect(page.locator(".rp-form")).to_have_count(0)
    forged = httpx.post(
        f"{live_server}/v1/pledges",
        json={"email": "forged@example.org", "amount": 500, "currency": "eur"},
        headers={"Origin": foreign_site.origin},
    )
    assert forged.status_code == 403
    assert pledges(db) == []


def tab_to(page: Page, selector: str) -> None:
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


# Where the focus is, and whether it shows: a radio is drawn by the span after it.
FOCUSED = """() => {
    const element = document.activeElement;
    const drawn = element.matches('.rp-choice input') ? element.nextElementSibling : element;
    const style = getComputedStyle(drawn);
    return {
        name: element.name || element.placeholder || element.className,
        visible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
    };
}"""
TAB_ORDER = [
    "interval", "amount", "currency", "email", "reader_name", "cover_fees",
    # localstripe's stand-in card inputs, where real Stripe has its own iframe
    "number", "exp_month", "exp_year", "cvc", "postal_code",
    "rp-submit",
]  # fmt: skip
STAND_IN = {"number", "exp_month", "exp_year", "cvc", "postal_code"}


def walk_focus(page: Page, key: str, steps: int) -> list[dict[str, object]]:
    stops = []
    for _ in range(steps):
        page.keyboard.press(key)
        stops.append(page.evaluate(FOCUSED))
    return stops


def test_keyboard_only_pledge(page: Page, live_server: str, db: Session) -> None:
    open_widget(page, f"{live_server}/demo")

    # Tab visits every control once, in reading order, and Shift-Tab walks back; each of ours
    # shows where the focus is.
    forward = walk_focus(page, "Tab", len(TAB_ORDER))
    assert [stop["name"] for stop in forward] == TAB_ORDER
    backward = walk_focus(page, "Shift+Tab", len(TAB_ORDER) - 1)
    assert [stop["name"] for stop in backward] == TAB_ORDER[-2::-1]
    ours = [stop for stop in forward + backward if stop["name"] not in STAND_IN]
    assert [stop["name"] for stop in ours if not stop["visible"]] == []
    # "Other amount" opens its field, which then takes the next Tab.
    page.keyboard.press("Tab")
    for _ in range(3):
        page.keyboard.press("ArrowRight")  # €10, €20, Other amount
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED) == {"name": "custom", "visible": True}
    page.keyboard.type("7")
    expect(page.locator(".rp-submit")).to_have_text("Pledge €7 a month")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # the next currency
    expect(page.locator("select[name=currency]")).to_have_value("usd")
    expect(page.locator(".rp-submit")).to_have_text("Pledge $7 a month")

    open_widget(page, f"{live_server}/demo")
    tab_to(page, "input[name=interval]")
    page.keyboard.press("ArrowRight")  # Yearly
    tab_to(page, "input[name=amount]")
    page.keyboard.press("ArrowRight")  # €10
    tab_to(page, "input[name=email]")
    page.keyboard.type("keys@example.org")
    tab_to(page, "input[name=cover_fees]")
    page.keyboard.press("Space")
    tab_to(page, ".rp-card input[placeholder=number]")
    # localstripe's stand-in moves the focus along as each part is complete.
    page.keyboard.type(VISA + "12" + "34" + "123" + "10115")
    tab_to(page, ".rp-submit")
    expect(page.locator(".rp-submit")).to_have_text("Pledge €10.61 a year")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    expect(page.locator(".rp-thanks")).to_be_focused()
    [pledge] = pledges(db)
    assert (pledge.interval, pledge.amount_minor, pledge.fee_cover_minor) == ("year", 1000, 61)


def test_failed_3d_secure_on_the_card_then_another_card_goes_through(
    page: Page, live_server: str, db: Session
) -> None:
    open_widget(page, f"{live_server}/demo")
    page.get_by_label("Email").fill("retry@example.org")
    fill_card(page, THREE_DS_ON_SETUP)
    page.locator(".rp-submit").click()
    page.get_by_role("button", name="Fail authentication").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Your bank could not confirm the payment. Please try again or use another card."
    )
    fill_card(page, VISA)
    page.locator(".rp-submit").click()

    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    # One pledge, two cards: the second card finished the same pledge.
    assert [(p.status, p.card_attempts) for p in pledges(db)] == [("active", 2)]


def test_a_fourth_card_needs_a_new_pledge_form(page: Page, live_server: str, db: Session) -> None:
    open_widget(page, f"{live_server}/demo")
    page.get_by_label("Email").fill("unlucky@example.org")
    for _ in range(3):
        fill_card(page, DECLINED_ON_SETUP)
        page.locator(".rp-submit").click()
        expect(page.get_by_role("alert")).to_contain_text("declined")
        expect(page.locator(".rp-submit")).to_be_enabled()

    assert [(p.status, p.card_attempts) for p in pledges(db)] == [("failed", 3)]


def test_form_fits_a_phone_screen_and_every_field_has_a_label(page: Page, live_server: str) -> None:
    open_widget(page, f"{live_server}/demo")

    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    unlabeled = page.evaluate(
        """[...document.querySelectorAll('.rp-form input, .rp-form select')]
            .filter(e => !e.closest('.rp-hp') && !e.closest('.rp-card'))
            .filter(e => !e.labels.length && !e.getAttribute('aria-label'))
            .map(e => e.name)"""
    )
    assert unlabeled == []
    expect(page.locator(".rp-status")).to_have_attribute("aria-live", "polite")


def test_reader_over_the_limit_is_told_to_wait_in_their_language(
    page: Page, allowed_site: ArticleSite, live_server: str, db: Session
) -> None:
    body = {"email": "busy@example.org", "amount": 500, "currency": "eur"}
    statuses = {httpx.post(f"{live_server}/v1/pledges", json=body).status_code for _ in range(5)}
    assert statuses == {201}

    open_widget(page, allowed_site.url(locale="ru"))
    page.get_by_label("Эл. почта").fill("busy@example.org")
    fill_card(page, VISA)
    page.locator(".rp-submit").click()

    expect(page.get_by_role("alert")).to_have_text("Слишком много попыток. Попробуйте позже.")
    assert len(pledges(db)) == 5
