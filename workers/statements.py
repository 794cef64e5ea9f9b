"""The yearly statement mail, from beat: on STATEMENTS_SEND_ON, queue last fiscal year's."""

import structlog

from billing.db import session_scope
from billing.settings import get_settings
from billing.statements.service import queue_statements, year_due_for_mailing
from workers.celery_app import app

log = structlog.get_logger()
SEND_DUE_STATEMENTS_TASK = "workers.statements.send_due_statements"


# celery ships no type hints, hence the ignore on its decorator.
@app.task(name=SEND_DUE_STATEMENTS_TASK)  # type: ignore[untyped-decorator]
def send_due_statements() -> int:
    """Runs every hour; only the outbox rows that are missing get written, so reruns send none."""
    settings = get_settings()
    year = year_due_for_mailing(settings)
    if year is None:
        return 0
    with session_scope() as session:
        result = queue_statements(session, settings, year=year)
    if result.queued:
        log.info("statements_queued", fiscal_year=year, count=result.queued)
    return result.queued
