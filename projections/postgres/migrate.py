"""Running Alembic programmatically against the configured namespace."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from ledger.connections import sqlalchemy_url
from ledger.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(settings: Settings, schema: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(settings).replace("%", "%%"))
    config.set_main_option("memledger.schema", schema or settings.db_schema)
    return config


def upgrade(settings: Settings, revision: str = "head", schema: str | None = None) -> None:
    """Apply revisions up to `revision` in the namespace's schema (or `schema`)."""
    command.upgrade(alembic_config(settings, schema), revision)


def check(settings: Settings) -> None:
    """Raise if the database differs from the models (alembic's `check`)."""
    command.check(alembic_config(settings))
