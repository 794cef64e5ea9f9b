"""Writing to the email outbox: one row per email that must go out, never two for one key."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from billing.db import utcnow
from billing.models import EmailOutbox


def queue_email(
    session: Session,
    *,
    dedupe_key: str,
    template: str,
    to_email: str,
    locale: str = "en",
    context: dict[str, Any] | None = None,
    pledge_id: uuid.UUID | None = None,
    payment_id: int | None = None,
    send_after: datetime | None = None,
) -> bool:
    """Add the email in the caller's transaction; False when its key was queued before.

    The caller commits, and enqueues the send only after that commit.
    """
    now = utcnow()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(EmailOutbox)
        .values(
            dedupe_key=dedupe_key,
            template=template,
            to_email=to_email,
            locale=locale,
            context=context or {},
            pledge_id=pledge_id,
            payment_id=payment_id,
            status="pending",
            attempts=0,
            send_after=send_after or now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(EmailOutbox.id)
    )
    return session.execute(statement).first() is not None
