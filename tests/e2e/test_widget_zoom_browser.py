"""The widget at 200% zoom on a phone and on a desktop: nothing cut off or overlapping sideways,
and the pledge button in view and pressable."""

import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ArticleSite

pytestmark = pytest.mark.browser

ZOOM = 2
# Browser zoom halves the CSS pixels a screen has, and draws each one with two device pixels.
SCREENS = {"phone": (390, 844), "desktop": (1280, 800)}

# Our visible boxes in the widget (not localstripe's stand-in card inputs, not the off-screen
# honeypot), what sticks out of the viewport, what overflows its own box and which pairs of
# boxes that are not nested overlap.
LAYOUT_PROBLEMS = """() => {
    const width = document.documentElement.clientWidth;
    const boxes = [...document.querySelectorAll('.rp-widget, .rp-widget *')].filter(element =>
        !element.closest('.rp-hp') && !element.parentElement.closest('.rp-card')
        && element.getClientRects().length > 0
        && getComputedStyle(element).visibility !== 'hidden'
        && getComputedStyle(element).opacity !== '0');
    const name = element => element.tagName.toLowerCase()
        + (element.className ? '.' + element.className : '')
        + (element.name ? '[' + element.name + ']' : '')
        + (element.textContent ? ' "' + element.textContent.slice(0, 30) + '"' : '');
    const cutOff = boxes.filter(element => {
        const rect = element.getBoundingClientRect();
        return rect.left < -0.5 || rect.right > width + 0.5;
    }).map(name);
    const overflowing = boxes.filter(element =>
        !['INPUT', 'SELECT'].includes(element.tagName)
        && getComputedStyle(element).display !== 'inline'
        && element.scrollWidth > element.clientWidth + 1).map(name);
    const leaves = boxes.filter(element =>
        ![...element.children].some(child => boxes.includes(child)));
    const overlapping = [];
    leaves.forEach((a, i) => leaves.slice(i + 1).forEach(b => {
        if (a.contains(b) || b.contains(a)) return;
        // A radio lies under its own drawn label on purpose.
        if (a.parentElement === b.parentElement && a.parentElement.matches('.rp-choice')) return;
        const r = a.getBoundingClientRect(), s = b.getBoundingClientRect();
        const x = Math.min(r.right, s.right) - Math.max(r.left, s.left);
        const y = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
        if (x > 1 && y > 1) overlapping.push(name(a) + ' / ' + name(b));
    }));
    return {
        scrollWidth: document.documentElement.scrollWidth, width: width,
        cutOff: cutOff, overflowing: overflowing, overlapping: overlapping,
    };
}"""


@pytest.fixture(params=list(SCREENS))
def zoomed_page(request: Any, browser: Browser, live_server: str, db: Any) -> Iterator[Page]:
    width, height = SCREENS[request.param]
    context = browser.new_context(
        viewport={"width": width // ZOOM, "height": height // ZOOM},
        device_scale_factor=ZOOM,
        locale="en-US",
    )
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def assert_nothing_cut_off_or_overlapping(page: Page, state: str) -> None:
    if folder := os.environ.get("ZOOM_SCREENSHOTS"):
        page.screenshot(path=f"{folder}/{state}.png", full_page=True)
    layout = page.evaluate(LAYOUT_PROBLEMS)
    assert layout["scrollWidth"] <= layout["width"], layout
    assert (layout["cutOff"], layout["overflowing"], layout["overlapping"]) == ([], [], []), layout


def assert_submit_in_view_and_pressable(page: Page) -> None:
    page.locator(".rp-submit").scroll_into_view_if_needed()
    placed = page.evaluate(
        """() => {
            const rect = document.querySelector('.rp-submit').getBoundingClientRect();
            const middle = [rect.x + rect.width / 2, rect.y + rect.height / 2];
            const hit = document.elementFromPoint(...middle);
            return {
                inView: rect.left >= -0.5 && rect.top >= -0.5 && rect.right <= innerWidth + 0.5
                    && rect.bottom <= innerHeight + 0.5,
                onTop: hit !== null && hit.closest('.rp-submit') !== null,
            };
        }"""
    )
    assert placed == {"inView": True, "onTop": True}


@pytest.mark.parametrize("language", ["en", "ru", "de"])
def test_widget_at_200_percent_fits_and_its_button_works(
    language: str, zoomed_page: Page, live_server: str, allowed_site: ArticleSite
) -> None:
    page = zoomed_page
    screen = "phone" if page.viewport_size and page.viewport_size["width"] < 320 else "desktop"
    page.goto(f"{live_server}/demo" if language == "en" else allowed_site.url(locale=language))
    expect(page.locator(f".rp-widget[data-ready=true][lang={language}]")).to_be_visible()
    assert_nothing_cut_off_or_overlapping(page, f"{screen}-{language}-form")
    assert_submit_in_view_and_pressable(page)

    # Pressed with "Other amount" empty, the button answers: the error shows, the field takes the
    # focus, and the layout still holds.
    page.locator("input[value=other]").check(force=True)
    page.locator(".rp-submit").click()
    expect(page.locator(".rp-error")).to_be_visible()
    expect(page.locator("input[name=custom]")).to_be_focused()
    assert_nothing_cut_off_or_overlapping(page, f"{screen}-{language}-error")
    assert_submit_in_view_and_pressable(page)
