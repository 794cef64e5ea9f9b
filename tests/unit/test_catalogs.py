"""The catalogs hold every string the code shows readers, translated; missing words read English."""

import gettext
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from pydantic import ValidationError

from billing import i18n
from billing.i18n import Amount, Message, Plural, translate
from billing.settings import Settings, get_settings
from billing.widget.routes import widget_msgids, widget_words

CODE = Path(__file__).resolve().parents[2]
# The same as `make messages`, which the last test holds to it.
KEYWORDS = ["-k", "Message", "-k", "Plural:1,2"]
# Every language but the msgids' own must be complete.
TRANSLATED = [lang for lang in i18n.shipped_languages() if lang != i18n.SOURCE_LANGUAGE]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """What the code uses today, extracted afresh into a temporary catalog."""
    template = tmp_path_factory.mktemp("catalog") / "messages.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(CODE / "babel.cfg"), *KEYWORDS,
         "-o", str(template), str(CODE)]
    )  # fmt: skip
    with template.open("rb") as source:
        return read_po(source)


def catalog(language: str) -> Catalog:
    with (i18n.LOCALES_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=language)


def test_extraction_finds_mails_pages_errors_and_the_widget(extracted: Catalog) -> None:
    found = {message.id for message in extracted if message.id}

    assert {
        "Your receipt from %(newsroom)s",  # a mail's subject
        "Change my pledge",  # the manage page
        "Send me a link",  # the request-link page
        "The smallest pledge is %(amount)s.",  # the public API (and the widget)
        "Net contribution",  # the giving statement
        "Support our journalism",  # the widget only
        ("It lists %(num)d payment.", "It lists %(num)d payments."),  # a plural
    } <= found
    assert len(found) > 250


@pytest.mark.parametrize("language", i18n.shipped_languages())
def test_every_catalog_holds_every_string_the_code_uses(extracted: Catalog, language: str) -> None:
    shipped = catalog(language)
    missing = [message.id for message in extracted if message.id and message.id not in shipped]

    assert missing == [], f"run `make messages` and translate these in {language}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_string_is_translated_and_none_is_fuzzy(extracted: Catalog, language: str) -> None:
    shipped = catalog(language)
    wanting = []
    for wanted in extracted:
        message = shipped.get(wanted.id) if wanted.id else None
        if message is None:
            continue  # reported by the test above
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(forms) or len(forms) not in (1, shipped.num_plurals):
            wanting.append(message.id)

    assert wanting == []


@pytest.mark.parametrize("language", i18n.shipped_languages())
def test_translations_keep_every_placeholder(language: str) -> None:
    """Babel's own checks: a %(amount)s lost or misspelt would raise when the mail renders."""
    problems = [(message.id, errors) for message, errors in catalog(language).check()]

    assert problems == []


def test_russian_has_three_plural_forms_and_german_two() -> None:
    assert (catalog("ru").num_plurals, catalog("de").num_plurals) == (3, 2)
    minutes = [
        translate(Plural("Too many attempts. Please try again in %(num)d minute.",
                         "Too many attempts. Please try again in %(num)d minutes.", n), "ru")
        for n in (1, 2, 5)
    ]  # fmt: skip

    assert minutes == [
        "Слишком много попыток. Попробуйте снова через 1 минуту.",
        "Слишком много попыток. Попробуйте снова через 2 минуты.",
        "Слишком много попыток. Попробуйте снова через 5 минут.",
    ]


def test_a_message_is_english_text_until_it_is_translated() -> None:
    message = Message("The smallest pledge is %(amount)s.", amount=Amount(200, "eur"))

    assert message == "The smallest pledge is €2.00."
    assert translate(message, "de") == "Der kleinste Beitrag ist 2,00\xa0€."
    assert translate(message, "ru") == "Минимальная сумма — 2,00\xa0€."
    # A reason stored as English text (a pledge's failure reason) is looked up the same way.
    assert (
        translate(str(Message("Please pay with a card.")), "de")
        == "Bitte zahlen Sie mit einer Karte."
    )


def test_a_string_no_catalog_has_falls_back_to_english() -> None:
    assert translate(Message("A sentence nobody translated."), "de") == (
        "A sentence nobody translated."
    )
    assert translate("Please pay with a card.", "fr") == "Please pay with a card."


def test_a_blank_plural_form_reads_english_never_blank() -> None:
    partial = Catalog(locale="ru")
    partial.add(("%(num)d card", "%(num)d cards"), ("%(num)d карта", "", ""))
    compiled = io.BytesIO()
    write_mo(compiled, partial)
    compiled.seek(0)
    words = i18n.ReaderTranslations(compiled)

    assert words.ngettext("%(num)d card", "%(num)d cards", 1) == "%(num)d карта"
    assert words.ngettext("%(num)d card", "%(num)d cards", 5) == "%(num)d cards"


@pytest.fixture
def locales_without_compiled_catalogs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The shipped tree as a fresh checkout has it: every .po, no .mo."""
    for language in i18n.shipped_languages():
        source = i18n.LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
        (tmp_path / language / "LC_MESSAGES").mkdir(parents=True)
        (tmp_path / language / "LC_MESSAGES" / "messages.po").write_bytes(source.read_bytes())
    monkeypatch.setattr(i18n, "LOCALES_DIR", tmp_path)
    i18n.translations.cache_clear()
    yield tmp_path / "de" / "LC_MESSAGES"
    i18n.translations.cache_clear()


def test_a_catalog_without_its_mo_file_is_compiled_from_the_po_in_memory(
    locales_without_compiled_catalogs: Path,
) -> None:
    assert not (locales_without_compiled_catalogs / "messages.mo").exists()

    assert translate("Thank you!", "de") == "Vielen Dank!"


def test_a_mo_file_older_than_its_po_is_not_used(locales_without_compiled_catalogs: Path) -> None:
    stale = Catalog(locale="de")
    stale.add("Thank you!", "Veraltet")
    with (locales_without_compiled_catalogs / "messages.mo").open("wb") as compiled:
        write_mo(compiled, stale)
    edited = (locales_without_compiled_catalogs / "messages.po").stat().st_mtime
    os.utime(locales_without_compiled_catalogs / "messages.mo", (edited - 60, edited - 60))

    assert translate("Thank you!", "de") == "Vielen Dank!"


def test_make_install_compiled_every_catalog() -> None:
    """CI runs from a clean clone: `make install` must build what git does not hold."""
    for language in i18n.shipped_languages():
        compiled = i18n.LOCALES_DIR / language / "LC_MESSAGES" / "messages.mo"
        with compiled.open("rb") as source:
            assert isinstance(gettext.GNUTranslations(source), gettext.GNUTranslations)


def test_the_widget_gets_every_one_of_its_strings_in_german_and_russian() -> None:
    for language in TRANSLATED:
        words = widget_words(language)
        # Strings German spells like English ("Name (optional)") need no entry.
        same = {msgid for msgid in widget_msgids() if translate(msgid, language) == msgid}
        assert set(words) | same == widget_msgids()
        assert len(same) <= 1
    assert widget_words("de")["Pledge %(amount)s"] == "Mit %(amount)s unterstützen"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def settings(**values: str) -> Settings:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return Settings(_env_file=None)  # type: ignore[call-arg]

    yield settings
    get_settings.cache_clear()


def test_languages_default_to_english_russian_and_german(environment: Any) -> None:
    assert environment().languages == ["en", "ru", "de"]
    assert environment(LANGUAGES=" EN, de ,de").languages == ["en", "de"]


@pytest.mark.parametrize(
    ("languages", "complaint"),
    [("en,fr", "no catalog for fr"), ("ru,de", "must include en"), ("", "must include en")],
)
def test_a_language_without_a_catalog_or_without_english_is_refused(
    environment: Any, languages: str, complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        environment(LANGUAGES=languages)


def test_make_messages_extracts_with_the_same_keywords_as_this_test() -> None:
    assert " ".join(KEYWORDS) in (CODE / "Makefile").read_text()
