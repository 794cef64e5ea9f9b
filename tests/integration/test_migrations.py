"""The migrations build exactly the models' schema, and undo it, on the machine's PostgreSQL
and on an embedded one like `pledges dev` runs."""

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import billing.models  # noqa: F401
from billing import local_postgres
from billing.db import Base, build_engine
from billing.migrate import downgrade, upgrade
from tests.conftest import RUN_ID, database_url_named, free_port


@pytest.fixture
def embedded_admin_url(scratch_folder: Path) -> Iterator[str]:
    """An embedded server of this test's own, on a free port."""
    server = local_postgres.start(scratch_folder / "postgres", free_port())
    try:
        yield server.url()
    finally:
        local_postgres.stop(server.datadir)
    assert local_postgres.running(server.datadir) is None


@pytest.fixture(params=["machine", "embedded"])
def empty_database(request: pytest.FixtureRequest) -> Iterator[str]:
    fixture = "postgres_admin_url" if request.param == "machine" else "embedded_admin_url"
    admin_url: str = request.getfixturevalue(fixture)
    name = f"pledges_migrations_{RUN_ID}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url_named(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
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


def test_embedded_server_listens_on_loopback_only_and_keeps_its_data(scratch_folder: Path) -> None:
    datadir = scratch_folder / "postgres"
    server = local_postgres.start(datadir, free_port())
    try:
        url = server.create_database("pledges")
        with psycopg.connect(url, autocommit=True) as connection:
            assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert connection.execute("SHOW unix_socket_directories").fetchone() == ("",)
            connection.execute("CREATE TABLE kept (note text)")
            connection.execute("INSERT INTO kept VALUES ('still here')")
        local_postgres.stop(datadir)
        assert local_postgres.running(datadir) is None

        again = local_postgres.start(datadir, free_port())
        engine = build_engine(again.create_database("pledges"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT note FROM kept")).scalar_one() == "still here"
        engine.dispose()
    finally:
        local_postgres.stop(datadir)
