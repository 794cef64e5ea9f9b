"""A statement as an HTML page and as a PDF, both from the one template.

The PDF is WeasyPrint's rendering of the same HTML the reader can download, so the two can never
disagree. Chosen over fpdf2 (pure Python, but the layout would be drawn a second time in code,
and one TTF file covers only the scripts it has: a reader's name in Arabic or Chinese would print
as empty boxes) and typst (a second template language, its own fonts): WeasyPrint shapes text
with HarfBuzz through Pango and falls back across the system's fonts, embeds subsets of them, and
gives real selectable text. Its cost is system libraries: Pango (libpango-1.0-0,
libpangoft2-1.0-0) and a font with Cyrillic (fonts-dejavu-core), installed by the Dockerfile and
.ci/run; about 60 ms per statement.
"""

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from billing import i18n
from billing.settings import Settings
from billing.statements.service import Statement


def statement_locale(locale: str | None) -> str:
    """The enabled language closest to the reader's: 'ru-RU' → 'ru', anything else → 'en'."""
    return i18n.language_of(locale)


@lru_cache(maxsize=16)
def _environment(language: str) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    )
    return i18n.install(environment, language)


def render_html(statement: Statement, settings: Settings) -> str:
    lang = statement_locale(statement.locale)
    context: dict[str, Any] = {
        "lang": lang,
        "statement": statement,
        "newsroom": {
            "legal_name": settings.newsroom_legal_name or settings.newsroom_name,
            "address": settings.newsroom_address,
            "tax_id": settings.newsroom_tax_id,
            "legal_line": settings.newsroom_legal_line,
        },
    }
    return _environment(lang).get_template("statement.html").render(context)


def render_pdf(statement: Statement, settings: Settings) -> bytes:
    # Imported here: it loads Pango through cffi, which the API's other pages never need.
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # The statement needs nothing from outside; a fetcher that may fetch nothing means no text
    # in it (a reader's name, a setting) can make the renderer read a file or call a server.
    no_fetching = URLFetcher(allowed_protocols=())
    pdf = HTML(string=render_html(statement, settings), url_fetcher=no_fetching).write_pdf()
    assert pdf is not None  # write_pdf returns bytes when no target is given
    return bytes(pdf)


def file_name(statement: Statement, extension: str) -> str:
    return f"giving-statement-{statement.number}.{extension}"
