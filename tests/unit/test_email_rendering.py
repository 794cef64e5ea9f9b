"""Rendering in every language, locales, reader links and the email settings, without a database."""
# ruff: noqa: RUF001  (Russian text is meant to be Cyrillic)

import email
import email.policy
import json
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from billing.settings import Settings, get_settings
from workers.emails import message_id_for, retry_delay
from workers.rendering import UnknownTemplate, pick_locale, render_email

CONTEXT: dict[str, Any] = {
    "newsroom": {"name": "The Bugle", "address": "1 Main St", "legal_line": "Tax ID 1",
                 "support_email": None, "url": None},
    "reader_name": None, "manage_url": "https://news.example/manage/t", "interval": "month",
    "pledge_amount": "€5.00", "amount": "€5.00", "paid_date": "November 26, 2026",
    "receipt_number": "R-00000001", "period_start": None, "period_end": None,
    "update_url": "https://news.example/manage/t", "next_attempt_date": None,
    "refund_amount": None, "refund_date": None,
    "decline_kind": None, "card_expiry": "12/2026", "upgrade_url": None,
    "endpoint": {"id": 7, "url": "https://crm.example/hook", "reason": "HTTP 500"},
    "old_amount": "€3.00", "new_amount": "€5.00", "old_interval": "month",
    "new_interval": "year", "card_brand": "visa", "card_last4": "4242",
    "resumes_date": "January 1, 2027",
    "links": [{"manage_url": "https://news.example/manage/t", "amount": "€5.00",
               "interval": "month", "status": "active"}],
    "fiscal_year_label": "2026", "statement_number": "S-2026-000042",
    "statement_totals": ["€18.00"], "statement_payments": 3,
}  # fmt: skip
# Every optional part switched on, so every sentence of every template is rendered.
FULL = {**CONTEXT, "reader_name": "Ada", "decline_kind": "expired_card",
        "next_attempt_date": "December 3, 2026", "upgrade_url": "https://news.example/monthly/t",
        "refund_amount": "€2.00", "period_start": "November 1, 2026",
        "period_end": "November 30, 2026",
        "newsroom": {**CONTEXT["newsroom"], "support_email": "help@bugle.example",
                     "url": "https://bugle.example"}}  # fmt: skip
TEMPLATES = [
    "welcome_receipt", "receipt", "gift_receipt", "recovery_receipt", "payment_failed",
    "update_card", "payment_reminder", "final_notice", "cancellation", "support_ended", "refund",
    "endpoint_disabled", "amount_changed", "card_updated", "paused", "manage_link",
    "resuming", "card_expiring", "statement",
]  # fmt: skip
LANGUAGES = ["en", "ru", "de"]
# English words a German or Russian mail may keep: the names of commands an operator types,
# and words German shares with English.
KEPT_IN = {
    "ru": {"pledges", "endpoints", "enable", "replay", "since", "pdf"},
    "de": {
        "pledges",
        "endpoints",
        "enable",
        "replay",
        "since",
        "pdf",
        "link",
        "webhook",
        "bank",
        "minute",
        "system",
        "pause",
    },
}
CODE = Path(__file__).resolve().parents[2]


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def change(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield change
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("locale", LANGUAGES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_shipped_template_renders_subject_text_and_html(locale: str, template: str) -> None:
    rendered = render_email(template, locale, CONTEXT)

    assert rendered.subject and "\n" not in rendered.subject
    assert "The Bugle" in rendered.text and "\n\n\n" not in rendered.text
    assert f'<html lang="{locale}">' in rendered.html
    assert "{{" not in rendered.text + rendered.html
    assert "%(" not in rendered.subject + rendered.text + rendered.html


def english_words(text: str) -> set[str]:
    return {
        word.lower() for word in re.findall(r"[A-Za-z]{3,}", re.sub(r"<[^>]+>|&\w+;", " ", text))
    }


@pytest.mark.parametrize("locale", ["ru", "de"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_no_english_is_left_in_a_translated_mail(locale: str, template: str) -> None:
    """Only what the context brings (names, addresses, amounts, dates) may stay English."""
    english = render_email(template, "en", FULL)
    translated = render_email(template, locale, FULL)
    ours = english_words(english.subject + english.text + english.html) - english_words(
        json.dumps(FULL)
    )

    for part in (translated.subject, translated.text, translated.html):
        assert english_words(part) & ours <= KEPT_IN[locale], part
    assert translated.subject != english.subject


def test_a_mail_in_german_speaks_german_with_german_plurals() -> None:
    one = render_email("statement", "de", {**FULL, "statement_payments": 1})
    five = render_email("statement", "de", {**FULL, "statement_payments": 5})

    assert one.subject == "Ihre Spendenübersicht 2026 von The Bugle"
    assert one.text.startswith("Guten Tag Ada,\n\nvielen Dank für Ihre Unterstützung im Jahr 2026.")
    assert "Sie enthält 1 Zahlung." in one.text and "Sie enthält 5 Zahlungen." in five.text
    assert "Nettobeitrag: <strong>€18.00</strong>" in one.html


@pytest.mark.parametrize(("count", "words"), [(1, "1 платёж"), (2, "2 платежа"), (5, "5 платежей"),
                                             (21, "21 платёж"), (12, "12 платежей")])  # fmt: skip
def test_russian_plurals_take_the_form_the_count_needs(count: int, words: str) -> None:
    rendered = render_email("statement", "ru", {**FULL, "statement_payments": count})

    assert f"В ней {words}." in rendered.text
    assert f"В ней {words}." in rendered.html


def test_every_template_the_code_queues_is_shipped() -> None:
    """A mail queued under a name with no template is marked failed and never reaches anyone."""
    from billing.notifications import REMINDER_TEMPLATES

    lines = [line for folder in ("billing", "webhooks", "workers")
             for path in (CODE / folder).rglob("*.py")
             for line in path.read_text().splitlines()
             if re.search(r"\btemplate\s*=\s*\(?\s*\"", line)]  # fmt: skip
    queued = {name for line in lines for name in re.findall(r'"([a-z_]+)"', line)}
    queued |= REMINDER_TEMPLATES
    assert {"manage_link", "amount_changed", "card_updated", "paused", "receipt"} <= queued
    assert queued <= set(TEMPLATES)


@pytest.mark.parametrize(
    ("asked", "shipped"),
    [("ru", "ru"), ("ru-RU", "ru"), ("ru_RU", "ru"), ("EN-gb", "en"), ("de", "de"),
     ("de-AT", "de"), ("fr", "en"), ("", "en")],
)  # fmt: skip
def test_the_readers_locale_picks_the_closest_shipped_language(asked: str, shipped: str) -> None:
    assert pick_locale(asked) == shipped


def test_a_disabled_language_is_written_in_english(setting: Any) -> None:
    setting("LANGUAGES", "en,ru")

    assert pick_locale("de") == "en"
    assert render_email("receipt", "de", CONTEXT).subject == "Your receipt from The Bugle"
    assert render_email("receipt", "ru", CONTEXT).subject == "Квитанция от The Bugle"


def test_unknown_template_is_refused_by_name() -> None:
    with pytest.raises(UnknownTemplate, match=r"no email template thank_you_card"):
        render_email("thank_you_card", "en", CONTEXT)


def test_a_newsroom_folder_overrides_one_template_and_keeps_the_rest(
    tmp_path: Path, setting: Any
) -> None:
    (tmp_path / "receipt.txt").write_text(
        '{% extends "base.txt" %}{% block subject %}{{ _("Your receipt from %(newsroom)s", '
        "newsroom=newsroom.name) }}!{% endblock %}{% block content %}Our own words.{% endblock %}"
    )
    (tmp_path / "receipt.html").write_text("<p>Our own words.</p>")
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "refund.txt").write_text(
        '{% extends "base.txt" %}{% block subject %}Erstattet{% endblock %}'
        "{% block content %}Unsere Worte.{% endblock %}"
    )
    setting("EMAIL_TEMPLATES_DIR", str(tmp_path))

    receipt = render_email("receipt", "en", CONTEXT)
    receipt_ru = render_email("receipt", "ru", CONTEXT)
    refund = render_email("refund", "en", {**CONTEXT, "refund_amount": "€1.00"})
    refund_de = render_email("refund", "de", {**CONTEXT, "refund_amount": "€1.00"})

    assert receipt.subject == "Your receipt from The Bugle!"
    assert receipt.text.startswith("Our own words.")
    assert "Our own words." in receipt.html
    assert receipt_ru.subject == "Квитанция от The Bugle!"
    assert refund.subject == "Your refund from The Bugle"
    assert (refund_de.subject, refund_de.text.splitlines()[0]) == ("Erstattet", "Unsere Worte.")


def test_retry_delay_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    settings = Settings(email_retry_base_seconds=30, email_retry_max_seconds=1800)

    for attempts, ceiling in [(1, 30), (2, 60), (3, 120), (7, 1800), (20, 1800)]:
        delays = {retry_delay(attempts, settings) for _ in range(20)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1


def test_message_id_is_the_same_on_every_attempt_and_differs_between_emails() -> None:
    settings = Settings(mail_from="The Bugle <news@bugle.example>")

    first = message_id_for("receipt:in_1", settings)
    assert first == message_id_for("receipt:in_1", settings)
    assert first != message_id_for("receipt:in_2", settings)
    assert first.endswith("@bugle.example>")


@pytest.mark.parametrize("schedule", ["10,3", "0,3", "3,3", "three"])
def test_a_dunning_schedule_that_does_not_increase_is_refused(schedule: str, setting: Any) -> None:
    setting("DUNNING_SCHEDULE_DAYS", schedule)
    with pytest.raises(ValidationError, match=r"DUNNING_SCHEDULE_DAYS|dunning_schedule_days"):
        Settings(environment="development")


def test_the_placeholder_reader_link_secret_is_refused_outside_development(setting: Any) -> None:
    setting("READER_LINK_SECRET", "changeme")
    with pytest.raises(ValidationError, match="READER_LINK_SECRET must be set"):
        Settings(
            environment="production", stripe_api_key="sk_live_x",
            stripe_publishable_key="pk_live_x", stripe_webhook_secret="whsec_live" + "w" * 32,
        )  # fmt: skip
    assert Settings(environment="development").reader_link_secret.get_secret_value() == "changeme"


def test_a_built_mail_decodes_to_what_was_rendered_in_short_quoted_printable_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from workers import emails

    monkeypatch.setattr(emails, "email_context", lambda _session, _row, _settings: CONTEXT)
    row = SimpleNamespace(
        template="receipt", locale="ru", to_email="ada@example.org", message_id=None,
        dedupe_key="receipt:in_1",
    )  # fmt: skip
    rendered = render_email("receipt", "ru", CONTEXT)

    raw = emails.build_message(None, row, get_settings()).as_bytes()  # type: ignore[arg-type]

    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == rendered.subject and message["Content-Language"] == "ru"
    assert message.get_content_type() == "multipart/alternative"
    for part, sent in ((message.get_body(("plain",)), rendered.text),
                       (message.get_body(("html",)), rendered.html)):  # fmt: skip
        assert part is not None and part["Content-Transfer-Encoding"] == "quoted-printable"
        assert max(len(line) for line in part.get_payload().splitlines()) <= 76
        assert part.get_content().replace("\r\n", "\n") == sent
    # The fixed boundary: no part may contain it.
    assert raw.count(b"--=_reader-pledges-alternative") == 3


@pytest.mark.parametrize("locale", LANGUAGES)
@pytest.mark.parametrize("template", ["receipt", "payment_reminder", "statement"])
def test_a_built_mail_is_written_byte_for_byte_as_the_standard_policy_writes_it(
    locale: str, template: str, setting: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from workers import emails
    from workers.statement_mail import Attachment

    setting("MAIL_FROM", '"The Bugle, Inc." <news@bugle.example>')
    setting("NEWSROOM_SUPPORT_EMAIL", "help@bugle.example")
    monkeypatch.setattr(emails, "email_context", lambda _session, _row, _settings: FULL)
    pdf = Attachment("statement-2026.pdf", "application", "pdf", b"%PDF-1.7 " * 50)
    monkeypatch.setattr(emails, "statement_parts", lambda *_args: ({}, [pdf]))
    row = SimpleNamespace(
        template=template, locale=locale, to_email="Ada Lovelace <ada@example.org>",
        message_id=None, dedupe_key=f"{template}:in_1",
    )  # fmt: skip
    message = emails.build_message(None, row, get_settings())  # type: ignore[arg-type]

    standard = email.policy.SMTP.clone(max_line_length=998)
    assert message.as_bytes() == message.as_bytes(policy=standard)
