"""The migrations build exactly the models' schema, and undo it, on PostgreSQL and SQLite."""

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import billing.models  # noqa: F401
from billing.db import Base, build_engine
from billing.migrate import downgrade, upgrade
from tests.conftest import ADMIN_URL, RUN_ID

# SQLite is being retired: 0005 (outgoing webhooks) builds its tables on PostgreSQL only.
SQLITE_RETIRED = pytest.mark.skip(reason="0005 onwards is PostgreSQL-only")


@pytest.fixture(params=["postgresql", pytest.param("sqlite", marks=SQLITE_RETIRED)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    name = f"pledges_migrations_{RUN_ID}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(empty_database: str) -> None:
    upgrade(empty_database)
    engine = build_engine(empty_database)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)

        downgrade(empty_database)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        upgrade(empty_database)
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    finally:
        engine.dispose()
