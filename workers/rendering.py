"""Turning a template name, a language and a context into a subject, an HTML body and a text body.

One template per mail and format (`receipt.txt`, `receipt.html`); its words come from the gettext
catalogs (billing/i18n.py), so every language renders the same template.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
)
from markupsafe import Markup

from billing import i18n
from billing.settings import get_settings


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


class UnknownTemplate(LookupError):
    pass


def pick_locale(locale: str | None) -> str:
    """The enabled language closest to the reader's: 'ru-RU' → 'ru', anything else → 'en'."""
    return i18n.language_of(locale)


def render_email(template: str, locale: str, context: Mapping[str, Any]) -> RenderedEmail:
    language = pick_locale(locale)
    text_template, html_template = _templates(
        get_settings().email_templates_dir, language, template
    )
    values = {**context, "locale": language}
    subject_block = text_template.blocks["subject"]
    subject = " ".join("".join(subject_block(text_template.new_context(values))).split())
    values["subject"] = subject
    text = text_template.render(values).strip() + "\n"
    html = _inliner().inline(html_template.render(values))
    return RenderedEmail(subject=subject, html=html, text=_tidy(text))


def _tidy(text: str) -> str:
    """No runs of blank lines where optional parts of a template were left out."""
    lines = [line.rstrip() for line in text.splitlines()]
    kept = [line for i, line in enumerate(lines) if line or (i > 0 and lines[i - 1])]
    return "\n".join(kept).strip() + "\n"


def _strong(value: object) -> Markup:
    return Markup("<strong>%s</strong>") % value


def _link(text: object, href: str) -> Markup:
    return Markup('<a href="%s">%s</a>') % (href, text)


@lru_cache(maxsize=512)
def _templates(
    templates_dir: Path | None, language: str, template: str
) -> tuple[Template, Template]:
    """Looked up once per process: a lookup tries the language's folder first, and a miss
    costs every loader a trip to the disk on every mail (more than the rendering)."""
    text_env, html_env = _environments(templates_dir, language)
    # A newsroom's folder may hold `<language>/<name>` for one language or `<name>` for all.
    try:
        return (
            text_env.select_template([f"{language}/{template}.txt", f"{template}.txt"]),
            html_env.select_template([f"{language}/{template}.html", f"{template}.html"]),
        )
    except TemplateNotFound as missing:
        raise UnknownTemplate(f"no email template {template}") from missing


@lru_cache(maxsize=16)
def _environments(templates_dir: Path | None, language: str) -> tuple[Environment, Environment]:
    """Text without escaping; HTML escaping everything, partials included. The `strong` and
    `link` filters mark up a value inside a translated sentence in HTML and leave it bare in
    text, so both formats share one msgid."""
    loaders: list[BaseLoader] = []
    if templates_dir is not None:
        loaders.append(FileSystemLoader(templates_dir))
    loaders.append(PackageLoader("workers", "templates"))
    options: dict[str, Any] = {
        "loader": ChoiceLoader(loaders),
        "undefined": StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
        # Templates are read when a worker starts; checking their files before every mail cost
        # a tenth of the worker's time.
        "auto_reload": False,
    }
    text = i18n.install(Environment(autoescape=False, **options), language)  # noqa: S701
    text.filters["strong"] = lambda value: value
    html = i18n.install(Environment(autoescape=True, **options), language)
    html.filters["strong"] = _strong
    html.filters["link"] = _link
    return text, html


@lru_cache(maxsize=1)
def _inliner() -> Any:
    return css_inline.CSSInliner(keep_style_tags=False)
