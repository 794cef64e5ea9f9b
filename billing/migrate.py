"""Alembic driven from code, so `pledges db upgrade` needs no alembic.ini anywhere."""

from alembic import command
from alembic.config import Config

from billing.settings import get_settings


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "billing:migrations")
    config.set_main_option("sqlalchemy.url", database_url or get_settings().database_url)
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
