"""Alembic runs every migration through here, against DATABASE_URL or the URL it is handed."""

from alembic import context

import billing.models  # noqa: F401  (registers every table on Base.metadata)
from billing.db import Base, build_engine
from billing.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_migrations_online() -> None:
    engine = build_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
