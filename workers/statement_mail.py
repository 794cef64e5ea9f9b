"""What the yearly statement mail adds to the usual mail context: its figures and its PDF.

The PDF is rendered when the mail is built, inside the outbox row's claim, not stored: a finished
fiscal year's figures no longer change (refunds and disputes count in the year they happen, as in
the revenue report), so a render after a crash gives the same document, and the outbox's lease
and dedupe key, not the file, are what keep the mail to one copy.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from billing.models import EmailOutbox
from billing.money import format_money
from billing.settings import Settings
from billing.statements import render
from billing.statements.service import (
    STATEMENT_TEMPLATE,
    build_statement,
    reader_of_statement_mail,
)

__all__ = ["STATEMENT_TEMPLATE", "Attachment", "statement_parts"]


@dataclass(frozen=True)
class Attachment:
    filename: str
    maintype: str
    subtype: str
    content: bytes


def statement_parts(
    session: Session, row: EmailOutbox, settings: Settings
) -> tuple[dict[str, Any], list[Attachment]]:
    """The statement's context keys and its PDF, for the outbox row of a statement mail."""
    reader = reader_of_statement_mail(session, str(row.context["reader_id"]))
    statement = build_statement(
        session, settings, reader=reader, year=int(row.context["fiscal_year"])
    )
    locale = render.statement_locale(row.locale)
    context = {
        "fiscal_year_label": statement.fiscal.label,
        "statement_number": statement.number,
        "statement_totals": [
            format_money(total.net, total.currency, locale) for total in statement.totals
        ],
        "statement_payments": sum(total.payments for total in statement.totals),
    }
    pdf = Attachment(
        filename=render.file_name(statement, "pdf"),
        maintype="application",
        subtype="pdf",
        content=render.render_pdf(statement, settings),
    )
    return context, [pdf]
