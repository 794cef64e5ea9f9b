"""The manage pages' words in English and Russian, the languages the widget speaks."""
# ruff: noqa: RUF001  (Russian text is meant to be Cyrillic)

from typing import Final

from starlette.requests import Request

STRINGS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Your pledge", "amount": "Amount", "status": "Status", "since": "Since",
        "a_month": "a month", "a_year": "a year", "once": "once",
        "payments": "Payments", "no_payments": "No payments recorded yet.", "date": "Date",
        "change_title": "Change the amount", "how_often": "How often", "monthly": "Monthly",
        "yearly": "Yearly", "change_button": "Change my pledge",
        "card_title": "Update your card", "new_card": "New card", "card_button": "Use this card",
        "checking_card": "Checking your card…",
        "pause_title": "Take a break",
        "pause_text": "Skip the next month; your pledge continues afterwards.",
        "pause_button": "Pause for a month",
        "cancel_title": "Cancel", "cancel_reason": "Why are you leaving? (optional)",
        "cancel_button": "Cancel my pledge",
        "data_title": "Your data", "download": "Download everything we hold about you",
        "erase_label": "Erase my name and email address and stop my pledges. Payment records "
        "stay, anonymised, as the law requires.",
        "erase_button": "Erase my data",
        "request_title": "Manage your pledge",
        "request_text": "Enter the email address you pledged with and we will send you a link "
        "to change or cancel your pledge.",
        "email": "Email", "send_link": "Send me a link",
        "erased_title": "Your data was erased",
        "erased_text": "We no longer hold your name or email address, and your pledges have "
        "stopped. The records of past payments that the law requires us to keep are now "
        "anonymous.",
        "done_amount": "Your pledge was changed. A confirmation is on its way.",
        "done_cancel": "Your pledge was cancelled. A confirmation is on its way.",
        "done_pause": "Your pledge is paused for a month. A confirmation is on its way.",
        "link_sent": "If we hold a pledge for that address, we have sent a link to it.",
        "invalid_link": "This link is not valid or has expired. Enter your email to get a new one.",
        "bad_email": "Enter a valid email address.",
        "too_many": "Too many requests. Please try again later.",
        "resumes": "Resumes on",
        "save_title": "Before you go",
        "save_intro": "If a monthly payment no longer suits you, you can keep supporting us "
        "in another way. Or cancel; it takes one click.",
        "lower_title": "Give less", "lower_label": "New amount ({currency}), from {minimum}",
        "lower_button": "Lower my pledge",
        "skip_title": "Skip the next payment",
        "skip_text": "We will not charge you on {skipped}; your pledge continues by itself from "
        "{resumes}.",
        "skip_button": "Skip the next payment",
        "break_title": "Take a break", "break_label": "Pause for",
        "break_1": "1 month (until {date})", "break_2": "2 months (until {date})",
        "break_3": "3 months (until {date})", "break_button": "Pause my pledge",
        "save_card_title": "Pay with another card",
        "save_card_text": "If your card is the trouble, give us a new one instead.",
        "save_card_button": "Change my card",
        "cancel_anyway_title": "Cancel anyway", "cancel_anyway_button": "Cancel my pledge",
        "back": "Back to my pledge",
        "done_lowered": "Your pledge was lowered. Thank you for staying! A confirmation is on "
        "its way.",
        "done_skipped": "Your next payment is skipped; your pledge continues on {date}. A "
        "confirmation is on its way.",
        "done_paused": "Your pledge is paused until {date}. A confirmation is on its way.",
        "done_card": "Thank you for staying! Enter your new card below.",
        "monthly_title": "Make it monthly",
        "monthly_intro": "Thank you for your gift of {amount}. Give a little every month "
        "instead, from the same card: you can change or cancel it at any time.",
        "monthly_label": "Every month ({currency}), from {minimum}",
        "monthly_button": "Give this every month",
        "monthly_done": "Thank you! You now give {amount} a month. A receipt is on its way.",
        "monthly_manage": "Change or cancel your monthly pledge",
        "monthly_bank": "Your bank asks you to confirm the first payment…",
        "monthly_failed": "Your card could not start a monthly pledge. You can pledge with "
        "another card on our site.",
        "monthly_not_possible": "This gift cannot be made monthly any more.",
        "statements_title": "Giving statements", "statement_pdf": "Statement (PDF)",
        "statement_html": "web page",
    },
    "ru": {
        "title": "Ваша поддержка", "amount": "Сумма", "status": "Статус", "since": "С",
        "a_month": "в месяц", "a_year": "в год", "once": "однократно",
        "payments": "Платежи", "no_payments": "Платежей пока нет.", "date": "Дата",
        "change_title": "Изменить сумму", "how_often": "Как часто", "monthly": "Ежемесячно",
        "yearly": "Раз в год", "change_button": "Изменить",
        "card_title": "Сменить карту", "new_card": "Новая карта",
        "card_button": "Использовать эту карту", "checking_card": "Проверяем карту…",
        "pause_title": "Сделать перерыв",
        "pause_text": "Пропустить следующий месяц; затем поддержка продолжится.",
        "pause_button": "Приостановить на месяц",
        "cancel_title": "Отменить", "cancel_reason": "Почему вы уходите? (необязательно)",
        "cancel_button": "Отменить поддержку",
        "data_title": "Ваши данные", "download": "Скачать всё, что мы о вас храним",
        "erase_label": "Удалить моё имя и адрес почты и остановить поддержку. Записи о "
        "платежах остаются обезличенными, как требует закон.",
        "erase_button": "Удалить мои данные",
        "request_title": "Управление поддержкой",
        "request_text": "Введите адрес, с которым вы оформляли поддержку, и мы пришлём ссылку, "
        "чтобы изменить или отменить её.",
        "email": "Эл. почта", "send_link": "Прислать ссылку",
        "erased_title": "Ваши данные удалены",
        "erased_text": "Мы больше не храним ваше имя и адрес почты, поддержка остановлена. "
        "Записи о прошлых платежах, которые мы обязаны хранить по закону, обезличены.",
        "done_amount": "Поддержка изменена. Подтверждение придёт на почту.",
        "done_cancel": "Поддержка отменена. Подтверждение придёт на почту.",
        "done_pause": "Поддержка приостановлена на месяц. Подтверждение придёт на почту.",
        "link_sent": "Если у нас есть поддержка с этим адресом, мы отправили на него ссылку.",
        "invalid_link": "Ссылка недействительна или устарела. Введите адрес, чтобы получить "
        "новую.",
        "bad_email": "Введите правильный адрес эл. почты.",
        "too_many": "Слишком много запросов. Попробуйте позже.",
        "resumes": "Возобновится",
        "save_title": "Прежде чем уйти",
        "save_intro": "Если ежемесячный платёж вам больше не подходит, вы можете поддержать нас "
        "иначе. Или отменить поддержку одним нажатием.",
        "lower_title": "Давать меньше", "lower_label": "Новая сумма ({currency}), от {minimum}",
        "lower_button": "Уменьшить сумму",
        "skip_title": "Пропустить следующий платёж",
        "skip_text": "Мы не будем списывать деньги {skipped}; поддержка продолжится сама с "
        "{resumes}.",
        "skip_button": "Пропустить следующий платёж",
        "break_title": "Сделать перерыв", "break_label": "Приостановить на",
        "break_1": "1 месяц (до {date})", "break_2": "2 месяца (до {date})",
        "break_3": "3 месяца (до {date})", "break_button": "Приостановить",
        "save_card_title": "Платить другой картой",
        "save_card_text": "Если дело в карте, укажите новую.",
        "save_card_button": "Сменить карту",
        "cancel_anyway_title": "Всё равно отменить", "cancel_anyway_button": "Отменить поддержку",
        "back": "Вернуться к поддержке",
        "done_lowered": "Сумма уменьшена. Спасибо, что остаётесь! Подтверждение придёт на почту.",
        "done_skipped": "Следующий платёж пропущен; поддержка продолжится {date}. "
        "Подтверждение придёт на почту.",
        "done_paused": "Поддержка приостановлена до {date}. Подтверждение придёт на почту.",
        "done_card": "Спасибо, что остаётесь! Укажите новую карту ниже.",
        "monthly_title": "Поддерживать ежемесячно",
        "monthly_intro": "Спасибо за ваш взнос {amount}. Вместо разового платежа можно давать "
        "понемногу каждый месяц с той же карты; изменить или отменить это можно в любой момент.",
        "monthly_label": "Каждый месяц ({currency}), от {minimum}",
        "monthly_button": "Давать это каждый месяц",
        "monthly_done": "Спасибо! Теперь вы даёте {amount} в месяц. Квитанция придёт на почту.",
        "monthly_manage": "Изменить или отменить ежемесячную поддержку",
        "monthly_bank": "Банк просит подтвердить первый платёж…",
        "monthly_failed": "С этой карты не удалось оформить ежемесячную поддержку. Вы можете "
        "оформить её с другой картой на нашем сайте.",
        "monthly_not_possible": "Этот взнос больше нельзя сделать ежемесячным.",
        "statements_title": "Справки о пожертвованиях", "statement_pdf": "Справка (PDF)",
        "statement_html": "веб-страница",
    },
}  # fmt: skip


def strings_for(locale: str) -> dict[str, str]:
    return STRINGS.get(locale, STRINGS["en"])


def request_locale(request: Request) -> str:
    """The reader's language from the browser when no pledge tells us."""
    preferred = request.headers.get("accept-language", "")[:2].lower()
    return preferred if preferred in STRINGS else "en"
