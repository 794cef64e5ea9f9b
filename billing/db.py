"""Engine, sessions and the declarative base: one place that knows how to reach the database."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import DateTime, MetaData, bindparam, create_engine, func, select
from sqlalchemy.dialects.postgresql import ARRAY, Insert, insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from billing.settings import get_settings

# Constraint names Alembic can find again when it compares the models with the database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every timestamp is a timestamptz; sessions run in UTC (see build_engine), so values read
    # back are UTC whatever the server's own time zone is.
    type_annotation_map = {datetime: DateTime(timezone=True)}


def utcnow() -> datetime:
    return datetime.now(UTC)


def sqlalchemy_url(url: str) -> str:
    """Accept the plain `postgresql://` URL operators know and pick the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same database as a URL libpq (psycopg without SQLAlchemy) takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def open_async_pool(max_size: int) -> AsyncConnectionPool:
    """A psycopg pool for the event loop, for hot paths that need no ORM (the webhook inbox).

    Its connections autocommit: each statement is its own durable transaction, without the
    two extra round trips of BEGIN and COMMIT.
    """
    pool = AsyncConnectionPool(
        libpq_url(get_settings().database_url),
        min_size=1,
        max_size=max_size,
        kwargs={"options": "-c timezone=UTC", "autocommit": True},
        open=False,
    )
    await pool.open()
    return pool


def build_engine(url: str) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"options": "-c timezone=UTC"},
        # A batch of webhook events is a few hundred KB of JSONB to parse.
        json_deserializer=orjson.loads,
    )


@lru_cache
def get_engine() -> Engine:
    return build_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work for tasks and the CLI: commits on success, rolls back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_rows(model: type["Base"], rows: Sequence[dict[str, Any]]) -> Insert:
    """INSERT of many rows (each with the same keys) as `INSERT … SELECT FROM unnest(arrays)`.

    A multi-row VALUES is a long new SQL text for every batch, which psycopg parses again each
    time (a third of a batch of renewals went there); this text is the same for any number of
    rows, so it is parsed and prepared once. RETURNING rows come back in no promised order:
    match them by a unique column.
    """
    columns = model.__table__.c
    names = list(rows[0])
    arrays = [
        bindparam(f"rows_{name}", [row[name] for row in rows], type_=ARRAY(columns[name].type))
        for name in names
    ]
    return _insert_unnested(model, names, arrays)


def insert_columns(model: type["Base"], names: Sequence[str]) -> Insert:
    """`insert_rows` without the rows, to build once: execute it with `columns_of(rows)`."""
    columns = model.__table__.c
    arrays = [bindparam(f"rows_{name}", type_=ARRAY(columns[name].type)) for name in names]
    return _insert_unnested(model, list(names), arrays)


def columns_of(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per column, under the names `insert_columns` binds them by."""
    return {f"rows_{name}": [row[name] for row in rows] for name in rows[0]}


def _insert_unnested(model: type["Base"], names: list[str], arrays: list[Any]) -> Insert:
    unnested = func.unnest(*arrays).table_valued(*names).render_derived()
    return insert(model).from_select(names, select(*unnested.c))


def reset_caches() -> None:
    """Forget the engine and settings, for tests and `pledges dev` that change the environment."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    get_settings.cache_clear()
