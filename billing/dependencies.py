"""FastAPI dependencies shared by every router."""

from collections.abc import Iterator

from sqlalchemy.orm import Session

from billing.db import get_sessionmaker


def get_session() -> Iterator[Session]:
    """A session per request; the route commits, anything uncommitted is rolled back here."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
