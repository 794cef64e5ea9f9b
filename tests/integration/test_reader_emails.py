"""Every reader email as it arrives at a real SMTP server: headers, both parts, both locales."""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html import unescape

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import notifications
from billing.db import utcnow
from billing.manage import mails
from billing.models import EmailOutbox, Pledge, Reader
from billing.reader_links import pledge_id_from_token
from tests.conftest import CaughtMail
from tests.ledger_rows import make_payment, make_pledge, make_reader, make_refund
from workers.emails import deliver


def deliver_pending(db: Session) -> list[str]:
    """Send every due outbox row in this process, as the worker's task would."""
    db.commit()
    keys = db.scalars(
        select(EmailOutbox.dedupe_key)
        .where(EmailOutbox.status == "pending", EmailOutbox.send_after <= utcnow())
        .order_by(EmailOutbox.id)
    ).all()
    return [deliver(key).outcome for key in keys]


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and the HTML part, the HTML with entities such as &nbsp; resolved."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content().replace("\r\n", "\n"), unescape(html.get_content())


def _welcome(db: Session, reader: Reader, pledge: Pledge) -> None:
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)


def _receipt(db: Session, reader: Reader, pledge: Pledge) -> None:
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=False)


def _failed(db: Session, reader: Reader, pledge: Pledge) -> None:
    payment = make_payment(db, pledge, status="failed")
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=False
    )


def _hard_decline(db: Session, reader: Reader, pledge: Pledge) -> None:
    payment = make_payment(db, pledge, status="failed")
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=True
    )


def _canceled(db: Session, reader: Reader, pledge: Pledge) -> None:
    notifications.pledge_canceled(db, reader=reader, pledge=pledge, after_failed_payments=False)


def _ended(db: Session, reader: Reader, pledge: Pledge) -> None:
    notifications.pledge_canceled(db, reader=reader, pledge=pledge, after_failed_payments=True)


def _refund(db: Session, reader: Reader, pledge: Pledge) -> None:
    payment = make_payment(db, pledge)
    refund = make_refund(db, payment, amount_minor=200)
    notifications.refund_created(
        db, reader=reader, pledge=pledge, payment=payment, refund_id=refund.stripe_refund_id
    )


def _amount_changed(db: Session, reader: Reader, pledge: Pledge) -> None:
    mails.amount_changed(
        db, reader=reader, pledge=pledge, old_amount_minor=300, old_interval="month",
        change_id="c-1",
    )  # fmt: skip


def _card_updated(db: Session, reader: Reader, pledge: Pledge) -> None:
    mails.card_updated(
        db, reader=reader, pledge=pledge, payment_method_id="pm_1", brand="visa", last4="4242"
    )


def _paused(db: Session, reader: Reader, pledge: Pledge) -> None:
    mails.paused(db, reader=reader, pledge=pledge, resumes_at=datetime(2027, 1, 1, tzinfo=UTC))


def _manage_link(db: Session, reader: Reader, pledge: Pledge) -> None:
    mails.manage_links(db, reader=reader, pledges=[pledge], window="2026-11-29T02")


# (scenario, subject in English, subject in Russian, words the text must hold in en / ru)
SCENARIOS: list[tuple[Callable[[Session, Reader, Pledge], None], str, str, str, str]] = [
    (_welcome, "Welcome, and thank you for supporting The Daily Bugle",
     "Добро пожаловать и спасибо за поддержку The Daily Bugle", "Receipt number",
     "Номер квитанции"),
    (_receipt, "Your receipt from The Daily Bugle", "Квитанция от The Daily Bugle",
     "Monthly support for The Daily Bugle", "Ежемесячная поддержка The Daily Bugle"),
    (_failed, "Your payment to The Daily Bugle didn't go through",
     "Платёж в пользу The Daily Bugle не прошёл", "/manage/", "/manage/"),
    (_hard_decline, "Please update your card for The Daily Bugle",
     "Пожалуйста, обновите карту для The Daily Bugle", "Trying it again will not help",
     "Повторная попытка с ней не поможет"),  # noqa: RUF001  (Russian, not a look-alike)
    (_canceled, "Your support for The Daily Bugle is cancelled",
     "Ваша поддержка The Daily Bugle отменена", "as you asked", "По вашей просьбе"),
    (_ended, "Your support for The Daily Bugle has ended",
     "Ваша поддержка The Daily Bugle прекращена", "could not collect", "Нам не удалось"),
    (_refund, "Your refund from The Daily Bugle", "Возврат средств от The Daily Bugle",
     "we refunded", "Мы вернули"),
    (_amount_changed, "Your support for The Daily Bugle was changed",
     "Ваша поддержка The Daily Bugle изменена", "changed from €3.00 a month", "было 3,00"),
    (_card_updated, "Your new card for The Daily Bugle is saved",
     "Новая карта для The Daily Bugle сохранена", "Visa card ending in 4242",
     "оканчивающаяся на 4242"),
    (_paused, "Your support for The Daily Bugle is paused",
     "Ваша поддержка The Daily Bugle приостановлена", "until January 1, 2027",
     "до 1 января 2027"),
    (_manage_link, "Your link to manage your support for The Daily Bugle",
     "Ссылка для управления поддержкой The Daily Bugle", "here is the link you asked for",
     "Вот ссылка"),
]  # fmt: skip


@pytest.fixture
def newsroom(monkeypatch: pytest.MonkeyPatch) -> None:
    from billing.settings import get_settings

    monkeypatch.setenv("NEWSROOM_NAME", "The Daily Bugle")
    monkeypatch.setenv("NEWSROOM_ADDRESS", "39th Street, New York")
    monkeypatch.setenv("NEWSROOM_LEGAL_LINE", "Tax ID 12-3456789. Gifts are not tax-deductible.")
    monkeypatch.setenv("MAIL_FROM", "The Daily Bugle <support@bugle.example>")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("locale", ["en", "ru"])
@pytest.mark.parametrize(
    ("scenario", "subject_en", "subject_ru", "words_en", "words_ru"),
    SCENARIOS,
    ids=[scenario[0].__name__.strip("_") for scenario in SCENARIOS],
)
def test_each_email_arrives_with_its_headers_and_both_parts_in_the_readers_language(
    db: Session,
    smtp_server: CaughtMail,
    newsroom: None,
    locale: str,
    scenario: Callable[[Session, Reader, Pledge], None],
    subject_en: str,
    subject_ru: str,
    words_en: str,
    words_ru: str,
) -> None:
    reader = make_reader(db, locale=locale, name="Ада" if locale == "ru" else "Ada")
    pledge = make_pledge(db, reader, amount_minor=500, currency="eur")
    scenario(db, reader, pledge)

    assert deliver_pending(db) == ["sent"]

    [message] = smtp_server.messages
    assert message["Subject"] == (subject_en if locale == "en" else subject_ru)
    assert message["To"] == "ada@example.org"
    assert message["From"] == "The Daily Bugle <support@bugle.example>"
    assert message["Content-Language"] == locale
    assert re.fullmatch(r"<[0-9a-f]{32}@bugle\.example>", message["Message-ID"])
    text, html = parts(message)
    assert (words_en if locale == "en" else words_ru) in text
    assert ("Ada" if locale == "en" else "Ада") in text
    assert "The Daily Bugle" in text and "39th Street, New York" in text
    money = "€5.00" if locale == "en" else "5,00\xa0€"
    if scenario is _refund:
        money = "€2.00" if locale == "en" else "2,00\xa0€"
    assert money in text and money in html
    # CSS is inlined for mail clients that drop <style>.
    assert "<style" not in html and 'style="' in html
    token = re.search(r"/manage/([\w.\-]+)", text)
    assert token is not None and pledge_id_from_token(token.group(1)) == pledge.id
    outbox = db.scalars(select(EmailOutbox)).one()
    db.refresh(outbox)
    assert outbox.status == "sent" and outbox.message_id == message["Message-ID"]


def test_receipt_holds_what_a_receipt_must_say(
    db: Session, smtp_server: CaughtMail, newsroom: None
) -> None:
    reader = make_reader(db)
    pledge = make_pledge(db, reader, amount_minor=1200, currency="usd", interval="year")
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=False)
    deliver_pending(db)

    text, html = parts(smtp_server.messages[0])
    for expected in (
        f"Receipt number: R-{payment.id:08d}",
        "Amount:         $12.00",
        "Annual support for The Daily Bugle",
        "Received by:    The Daily Bugle",
        "39th Street, New York",
        "Tax ID 12-3456789. Gifts are not tax-deductible.",
    ):
        assert expected in text
    assert f"R-{payment.id:08d}" in html and "Tax ID 12-3456789" in html


def test_one_time_gift_gets_a_gift_receipt(db: Session, smtp_server: CaughtMail) -> None:
    reader = make_reader(db, locale="ru")
    pledge = make_pledge(db, reader, amount_minor=3000, currency="eur", interval="once")
    payment = make_payment(db, pledge)
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=True)
    deliver_pending(db)

    [message] = smtp_server.messages
    assert message["Subject"].startswith("Спасибо за ваше пожертвование")
    assert "Разовое пожертвование" in parts(message)[0]
    assert "30,00\xa0€" in parts(message)[0]


def test_reader_name_is_escaped_in_html_but_kept_in_text(
    db: Session, smtp_server: CaughtMail
) -> None:
    reader = make_reader(db, name="<b>Bobby</b> & Co")
    pledge = make_pledge(db, reader)
    _receipt(db, reader, pledge)
    deliver_pending(db)

    text, html = parts(smtp_server.messages[0])
    assert "Hi <b>Bobby</b> & Co," in text
    raw_html = smtp_server.messages[0].get_body(("html",))
    assert raw_html is not None
    assert "&lt;b&gt;Bobby&lt;/b&gt; &amp; Co" in raw_html.get_content()
    assert "<b>Bobby</b>" in html  # only once entities are resolved


def test_failed_payment_links_to_stripes_hosted_invoice_when_given(
    db: Session, smtp_server: CaughtMail
) -> None:
    reader = make_reader(db)
    pledge = make_pledge(db, reader)
    payment = make_payment(db, pledge, status="failed")
    hosted = "https://invoice.stripe.com/i/acct_1/test_YWNjdA"
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=False,
        hosted_invoice_url=hosted,
    )  # fmt: skip
    deliver_pending(db)

    text, html = parts(smtp_server.messages[0])
    assert f"add a new one:\n{hosted}" in text
    assert f'href="{hosted}"' in html


FOLLOW_UPS = {
    "en": ["Reminder: your payment to The Daily Bugle is still open",
           "Last reminder: your support for The Daily Bugle is about to end",
           "Thank you, your payment went through"],
    "ru": ["Напоминание: платёж в пользу The Daily Bugle всё ещё не прошёл",
           "Последнее напоминание: ваша поддержка The Daily Bugle скоро прекратится",
           "Спасибо, платёж прошёл"],
    "de": ["Erinnerung: Ihre Zahlung an The Daily Bugle ist noch offen",
           "Letzte Erinnerung: Ihre Unterstützung für The Daily Bugle endet bald",
           "Danke, Ihre Zahlung ist durchgegangen"],
}  # fmt: skip


@pytest.mark.parametrize("locale", ["en", "ru", "de"])
def test_follow_up_mails_second_reminder_final_notice_and_recovery_in_every_language(
    db: Session, smtp_server: CaughtMail, newsroom: None, locale: str
) -> None:
    import time_machine

    from workers.dunning import queue_due_reminders

    reader = make_reader(db, locale=locale)
    pledge = make_pledge(db, reader, amount_minor=700, currency="eur")
    payment = make_payment(db, pledge, status="failed")
    notifications.payment_failed(
        db, reader=reader, pledge=pledge, payment=payment, hard_decline=False
    )
    deliver_pending(db)
    for days in (3, 10):  # the default schedule
        with time_machine.travel(utcnow() + timedelta(days=days, minutes=1), tick=False):
            queue_due_reminders(db, utcnow())
            deliver_pending(db)
    payment.status, payment.paid_at = "paid", utcnow()
    notifications.payment_succeeded(db, reader=reader, pledge=pledge, payment=payment, first=False)
    deliver_pending(db)

    follow_ups = smtp_server.messages[1:]
    assert [message["Subject"] for message in follow_ups] == FOLLOW_UPS[locale]
    money = "€7.00" if locale == "en" else "7,00\xa0€"
    for message in follow_ups:
        assert message["Content-Language"] == locale
        text, html = parts(message)
        assert money in text and money in html
        assert "/manage/" in text
    assert f"R-{payment.id:08d}" in parts(follow_ups[-1])[0]
