"""Readers' languages: which are enabled, their gettext catalogs, and words translated late.

Every reader-facing string is an English msgid in `billing/locales/<lang>/LC_MESSAGES/
messages.po` (one tree, domain `messages`). The compiled `.mo` files are built by `make install`
and the Dockerfile, not committed; when one is missing or older than its `.po` (a fresh checkout,
a translator's edit) the `.po` is compiled in memory instead, so a reader never sees a blank or a
stale word. A string a catalog lacks is shown in English.
"""

import gettext
import io
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import structlog
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment
from starlette.requests import Request

from billing.money import format_money

log = structlog.get_logger()

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"
# The language of the msgids, and the one every other falls back to.
SOURCE_LANGUAGE = "en"


def shipped_languages() -> list[str]:
    """Every language with a catalog in the locales tree."""
    return sorted(
        path.parent.parent.name for path in LOCALES_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")
    )


def _primary(tag: str | None) -> str:
    """'ru-RU', 'ru_RU' and 'RU' are all 'ru'."""
    return (tag or "").strip().replace("-", "_").split("_")[0].lower()


def language_of(tag: str | None, enabled: Sequence[str] | None = None) -> str:
    """The enabled language closest to a reader's tag; English for anything else."""
    if enabled is None:
        from billing.settings import get_settings

        enabled = get_settings().languages
    language = _primary(tag)
    return language if language in enabled else SOURCE_LANGUAGE


def negotiate(accept_language: str, enabled: Sequence[str] | None = None) -> str:
    """The browser's most preferred enabled language from an Accept-Language header."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, weight = part.strip().partition(";q=")
        try:
            quality = float(weight) if weight else 1.0
        except ValueError:
            continue
        if tag and quality > 0:
            ranked.append((-quality, position, tag))
    for _quality, _position, tag in sorted(ranked):
        language = language_of(tag, enabled)
        if language == _primary(tag):
            return language
    return SOURCE_LANGUAGE


def request_language(request: Request) -> str:
    return negotiate(request.headers.get("accept-language", ""))


class ReaderTranslations(gettext.GNUTranslations):
    """A catalog whose empty translations (a plural form left blank) read as English."""

    def gettext(self, message: str) -> str:
        return super().gettext(message) or message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        return super().ngettext(msgid1, msgid2, n) or (msgid1 if n == 1 else msgid2)


@lru_cache(maxsize=16)
def translations(language: str) -> gettext.NullTranslations:
    """The catalog of a shipped language; English (the msgids themselves) for any other."""
    po_path = LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == SOURCE_LANGUAGE or not po_path.is_file():
        return gettext.NullTranslations()
    mo_path = po_path.with_suffix(".mo")
    if mo_path.is_file() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
        with mo_path.open("rb") as compiled:
            return ReaderTranslations(compiled)
    log.warning("catalog_compiled_in_memory", language=language, hint="run make install")
    with po_path.open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return ReaderTranslations(buffer)


class Amount(NamedTuple):
    """Money in a Message, formatted in the language the message is shown in."""

    amount_minor: int
    currency: str


Param = str | int | Amount


class Message(str):
    """Words for a reader, translated where the reader's language is known, not where raised.

    It is the English text (so logs, tests and old callers see a plain string) and remembers its
    msgid and values; `translate` gives it in another language. `pybabel extract -k Message`
    finds the msgids.
    """

    msgid: str
    params: Mapping[str, Param]

    def __new__(cls, msgid: str, /, **params: Param) -> "Message":
        text = super().__new__(cls, _fill(msgid, params, SOURCE_LANGUAGE))
        text.msgid, text.params = msgid, params
        return text

    def words(self, catalog: gettext.NullTranslations) -> str:
        return catalog.gettext(self.msgid)


class Plural(Message):
    """A Message whose words depend on a count (`%(num)d`): Russian has three forms, not two."""

    plural: str
    number: int

    def __new__(cls, singular: str, plural: str, number: int, /, **params: Param) -> "Plural":
        params = {"num": number, **params}
        english = singular if number == 1 else plural
        text = str.__new__(cls, _fill(english, params, SOURCE_LANGUAGE))
        text.msgid, text.plural, text.number, text.params = singular, plural, number, params
        return text

    def words(self, catalog: gettext.NullTranslations) -> str:
        return catalog.ngettext(self.msgid, self.plural, self.number)


def _fill(text: str, params: Mapping[str, Param], language: str) -> str:
    if not params:
        return text
    values = {
        name: format_money(*value, language) if isinstance(value, Amount) else value
        for name, value in params.items()
    }
    return text % values


def translate(text: str, language: str) -> str:
    """A Message, or a msgid stored as text (a pledge's failure reason), in `language` if it is
    enabled, else in English."""
    language = language_of(language)
    catalog = translations(language)
    if isinstance(text, Message):
        return _fill(text.words(catalog), text.params, language)
    return catalog.gettext(text)


# The ledger's statuses as readers read them on their page and in mails.
PLEDGE_STATUS_WORDS = {
    "pending": Message("not started"),
    "active": Message("active"),
    "past_due": Message("payment overdue"),
    "paused": Message("paused"),
    "canceled": Message("cancelled"),
    "failed": Message("failed"),
}
PAYMENT_STATUS_WORDS = {
    "pending": Message("processing"),
    "paid": Message("paid"),
    "failed": Message("failed"),
    "refunded": Message("refunded"),
    "void": Message("void"),
}


def format_day(moment: date | None, language: str) -> str:
    """A date as readers write it: 'November 26, 2026', '26. November 2026'."""
    if not moment:
        return ""
    # Babel takes a datetime's own date too; the cache is what a batch of receipts needs, as
    # formatting took 60 µs and a receipt names three days.
    day = moment.date() if isinstance(moment, datetime) else moment
    return _long_date(day, language_of(language))


@lru_cache(maxsize=4096)
def _long_date(day: date, language: str) -> str:
    return str(format_date(day, format="long", locale=language))


def install(environment: Environment, language: str) -> Environment:
    """Jinja's i18n extension on `environment`, speaking `language`, with its money and dates.

    One environment per language: templates call `_()`, `ngettext()` and the `money` and `day`
    filters without passing the language around.
    """
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    environment.filters["money"] = lambda minor, currency: format_money(minor, currency, language)
    environment.filters["day"] = lambda moment: format_day(moment, language)
    environment.filters["translated"] = lambda text: translate(text, language)
    environment.filters["pledge_status"] = lambda status: _status(
        PLEDGE_STATUS_WORDS, status, language
    )
    environment.filters["payment_status"] = lambda status: _status(
        PAYMENT_STATUS_WORDS, status, language
    )
    return environment


def _status(words: Mapping[str, Message], status: str, language: str) -> str:
    """A status we have no words for is shown as the ledger spells it, not hidden."""
    return translate(words[status], language) if status in words else status
