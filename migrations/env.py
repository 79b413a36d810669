"""Alembic environment: runs revisions inside the namespace's schema."""

from __future__ import annotations

import re

from alembic import context
from sqlalchemy import Column, create_engine, text

from projections.postgres.schema import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
schema = config.get_main_option("memledger.schema")


# The archive's month partitions (0005) are created by its writers, not modelled one by one.
_MONTH = re.compile(r"event_archive_y\d{4}m\d{2}")


# Indexes on an expression (0007's, with a collation): Alembic reflects them without it and
# would report drift on every check. tests/test_query_plans.py checks what they serve.
_EXPRESSION_INDEXES = {index.name for table in metadata.tables.values() for index in table.indexes
                       if any(not isinstance(e, Column) for e in index.expressions)}


def _include_object(item: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return not (type_ == "index" and name in _EXPRESSION_INDEXES)


def _include(name: str | None, type_: str, parent_names: object) -> bool:
    # The version table shares the schema; it is Alembic's, not a model's.
    return not (type_ == "table" and (name == "alembic_version" or _MONTH.fullmatch(name or "")))


def run_migrations_online() -> None:
    # The schema is picked by search_path, so revisions and `alembic check` stay
    # schema-agnostic and one database can hold many namespaces (tests, benchmarks).
    engine = create_engine(url, connect_args={"options": f"-c search_path={schema}"})
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(connection=connection, target_metadata=metadata, version_table_schema=schema,
                          include_name=_include, include_object=_include_object)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
