"""Readers' own pages (manage, save, request-link, erased, make-it-monthly) in their language."""

from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import Response

from billing import i18n

TEMPLATE_DIRS = [
    Path(__file__).parent / "templates",
    Path(__file__).parent.parent / "upgrades" / "templates",
]
# The token in the address is the reader's key: keep it out of caches, referrers and frames.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Robots-Tag": "noindex",
}


@lru_cache(maxsize=16)
def _templates(language: str) -> Jinja2Templates:
    environment = Environment(loader=FileSystemLoader(TEMPLATE_DIRS), autoescape=True)
    return Jinja2Templates(env=i18n.install(environment, language))


def render_page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    language: str | None = None,
    status: int = 200,
) -> Response:
    """`language` is the pledge's when the page is about one; else the browser's."""
    language = i18n.language_of(language) if language else i18n.request_language(request)
    return _templates(language).TemplateResponse(
        request, name, {"lang": language, **context}, status_code=status, headers=PAGE_HEADERS
    )
