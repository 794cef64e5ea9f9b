"""A statement's words in English and Russian, the languages readers' mails are written in."""
# ruff: noqa: RUF001  (Russian text is meant to be Cyrillic)

from typing import Final

STRINGS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Giving statement", "year": "Fiscal year", "number": "Statement number",
        "issued": "Issued", "period": "Period", "to": "to", "for": "Prepared for",
        "tax_id": "Tax ID",
        "intro": "Thank you for supporting independent journalism. This statement lists every "
        "payment you made to us in the fiscal year, and any money returned to you.",
        "date": "Date", "description": "Description", "receipt": "Receipt", "amount": "Amount",
        "gift_month": "Monthly support", "gift_year": "Annual support",
        "gift_once": "One-time gift", "refund": "Refund", "dispute": "Disputed payment",
        "dispute_won": "Disputed payment, resolved in our favour (not deducted)",
        "totals": "Totals", "currency": "Currency", "payments": "Payments", "gross": "Given",
        "refunded": "Refunded", "disputed": "Disputed", "net": "Net contribution",
        "download_pdf": "PDF", "download_html": "HTML",
    },
    "ru": {
        "title": "Справка о пожертвованиях", "year": "Финансовый год",
        "number": "Номер справки", "issued": "Дата выдачи", "period": "Период", "to": "—",
        "for": "Получатель", "tax_id": "Налоговый номер",
        "intro": "Спасибо, что поддерживаете независимую журналистику. В справке перечислены "
        "все ваши платежи за финансовый год и все возвраты.",
        "date": "Дата", "description": "Описание", "receipt": "Квитанция", "amount": "Сумма",
        "gift_month": "Ежемесячная поддержка", "gift_year": "Ежегодная поддержка",
        "gift_once": "Разовое пожертвование", "refund": "Возврат",
        "dispute": "Оспоренный платёж",
        "dispute_won": "Оспоренный платёж, спор решён в нашу пользу (не вычитается)",
        "totals": "Итого", "currency": "Валюта", "payments": "Платежей", "gross": "Внесено",
        "refunded": "Возвращено", "disputed": "Оспорено", "net": "Итоговый вклад",
        "download_pdf": "PDF", "download_html": "HTML",
    },
}  # fmt: skip


def strings_for(locale: str) -> dict[str, str]:
    return STRINGS.get(locale, STRINGS["en"])
