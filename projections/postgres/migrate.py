"""Running Alembic programmatically against the configured namespace.

Alembic (and SQLAlchemy under it) is imported only when a migration runs: most
`memledger` commands never need it, and it is a third of the CLI's start-up time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ledger.connections import sqlalchemy_url
from ledger.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(settings: Settings, schema: str | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(settings).replace("%", "%%"))
    config.set_main_option("memledger.schema", schema or settings.db_schema)
    return config


def upgrade(settings: Settings, revision: str = "head", schema: str | None = None) -> None:
    """Apply revisions up to `revision` in the namespace's schema (or `schema`).

    Under a PostgreSQL advisory lock per schema: `memledger serve` and `memledger up` started
    together both migrate a new namespace, and two Alembic runs at once would both create its
    tables; the second now waits, then finds the schema at head and does nothing."""
    from alembic import command

    from ledger.postgres import connect

    target = schema or settings.db_schema
    with connect(settings, schema="public", autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"memledger:migrate:{target}",))
        try:
            command.upgrade(alembic_config(settings, schema), revision)
        finally:
            lock.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"memledger:migrate:{target}",))


def check(settings: Settings) -> None:
    """Raise if the database differs from the models (alembic's `check`)."""
    from alembic import command

    command.check(alembic_config(settings))
