"""Turning a template name, a locale and a context into a subject, an HTML body and a text body."""

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
    TemplateNotFound,
)

from billing.settings import get_settings

SHIPPED_LOCALES = ("en", "ru")
DEFAULT_LOCALE = "en"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


class UnknownTemplate(LookupError):
    pass


def pick_locale(locale: str | None) -> str:
    """The shipped language closest to the reader's: 'ru-RU' → 'ru', anything unknown → 'en'."""
    language = (locale or "").replace("-", "_").split("_")[0].lower()
    return language if language in SHIPPED_LOCALES else DEFAULT_LOCALE


def render_email(template: str, locale: str, context: Mapping[str, Any]) -> RenderedEmail:
    templates_dir = get_settings().email_templates_dir
    language = pick_locale(locale)
    name = f"{language}/{template}"
    text_env, html_env = _environments(templates_dir)
    try:
        text_template = text_env.get_template(name + ".txt")
        html_template = html_env.get_template(name + ".html")
    except TemplateNotFound as missing:
        raise UnknownTemplate(f"no email template {missing.name}") from missing
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


@lru_cache(maxsize=4)
def _environments(templates_dir: Path | None) -> tuple[Environment, Environment]:
    """Text without escaping; HTML escaping everything, partials included."""
    loaders: list[BaseLoader] = []
    if templates_dir is not None:
        loaders.append(FileSystemLoader(templates_dir))
    loaders.append(PackageLoader("workers", "templates"))
    loader = ChoiceLoader(loaders)
    options: dict[str, Any] = {
        "loader": loader,
        "undefined": StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "keep_trailing_newline": True,
    }
    return Environment(autoescape=False, **options), Environment(autoescape=True, **options)  # noqa: S701


@lru_cache(maxsize=1)
def _inliner() -> Any:
    return css_inline.CSSInliner(keep_style_tags=False)
