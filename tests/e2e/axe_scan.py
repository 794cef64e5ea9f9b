"""axe-core run inside the page under test: its violations, and which of them we refuse to ship."""

from collections.abc import Iterable
from typing import Any, TypedDict

from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Page

# WCAG 2.2 A and AA (2.2 adds target sizes, which axe leaves out unless asked) and axe's best
# practices; not AAA, not axe's experimental rules.
RULE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
# axe's own impact scale is minor, moderate, serious, critical.
BLOCKING_IMPACTS = frozenset({"serious", "critical"})
# Elements that localstripe's stand-in Stripe.js puts into our pages (its card inputs, its
# 3-D Secure box): real Stripe draws both in its own iframes, so they are not ours to judge.
NOT_OURS = "[data-axe-not-ours]"
MARK_LOCALSTRIPE = """() => {
    const marked = [...document.querySelectorAll('.rp-card > *, #card-element > *')];
    for (const box of document.body.children) {
        const buttons = [...box.querySelectorAll(':scope > button')].map(b => b.textContent);
        if (buttons.some(text => /authentication/i.test(text))) marked.push(box);
    }
    marked.forEach(node => node.setAttribute('data-axe-not-ours', ''));
    return marked.length;
}"""


class Violation(TypedDict):
    id: str
    impact: str | None
    help: str
    targets: list[str]


def axe_violations(page: Page, exclude: Iterable[str] = ()) -> list[Violation]:
    """Every WCAG 2.2 A/AA and best-practice violation axe finds in the page as it is now."""
    page.evaluate(MARK_LOCALSTRIPE)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    context = {"exclude": [[selector] for selector in (NOT_OURS, *exclude)]}
    results: dict[str, Any] = page.evaluate(
        "([context, options]) => axe.run(context, options)",
        [context, {"runOnly": {"type": "tag", "values": RULE_TAGS}, "resultTypes": ["violations"]}],
    )
    return [
        Violation(
            id=violation["id"],
            impact=violation["impact"],
            help=violation["help"],
            targets=[" ".join(map(str, node["target"])) for node in violation["nodes"]],
        )
        for violation in results["violations"]
    ]


def blocking(violations: list[Violation]) -> list[Violation]:
    return [violation for violation in violations if violation["impact"] in BLOCKING_IMPACTS]


def describe(violations: list[Violation]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['targets'])}" for v in violations
    )
