"""The bench's own namespace: created empty, removed entirely at the end, whatever happens.

Every Redis key of a namespace starts with `{<ns>:` or `{<ns>}` and every table lives in
the schema named after it, so deleting those removes all the bench wrote and nothing
else. A namespace that already holds data is refused, never cleaned.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ledger import Settings
from ledger.connections import RedisClient, connect_redis, database_url
from ledger.durability import ensure_durable
from ledger.errors import ConfigurationError, StoreUnavailable
from ledger.postgres import connect

__all__ = ["Sandbox", "bench_settings", "drop_namespace", "fresh_namespace", "namespace_keys", "open_sandbox"]

UNLIMITED = 10**9


def fresh_namespace() -> str:
    return f"bench_{secrets.token_hex(6)}"


def bench_settings(settings: Settings, namespace: str | None = None) -> Settings:
    """The configured servers and partitions, with a namespace of the bench's own and no rate limit."""
    return settings.model_copy(update={
        "namespace": namespace or fresh_namespace(), "rate_per_second": float(UNLIMITED), "rate_burst": UNLIMITED})


@dataclass
class Sandbox:
    settings: Settings
    redis: RedisClient
    pg: psycopg.Connection[Any]
    database_url: str


def namespace_keys(client: RedisClient, namespace: str) -> list[bytes]:
    """Every key of `namespace` (found with SCAN, so the server is never blocked)."""
    keys: list[bytes] = []
    for pattern in (f"{{{namespace}:*", f"{{{namespace}}}*"):
        keys += client.scan_iter(match=pattern, count=1000)
    return keys


def schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return row is not None


def connect_pg(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to `url`, with no search_path: the bench names every schema."""
    try:
        return connect(url, autocommit=True, timeout_s=10)
    except StoreUnavailable as e:
        raise StoreUnavailable(f"{e}; check MEMLEDGER_DATABASE_URL") from e


def ensure_unused(settings: Settings, client: RedisClient, conn: psycopg.Connection[Any]) -> None:
    """Refuse a namespace that holds anything."""
    ns = settings.namespace
    if namespace_keys(client, ns) or schema_exists(conn, settings.db_schema):
        raise ConfigurationError(f"namespace {ns!r} already holds data; the benchmark needs a fresh one")


def drop_namespace(settings: Settings) -> None:
    """Delete every Redis key and the PostgreSQL schema of the namespace (and its RabbitMQ queues,
    when the workers' broker is RabbitMQ), on fresh connections.

    Fresh, because the bench's own connections may be mid-command after Ctrl-C.
    """
    _drop_broker_queues(settings)
    client = connect_redis(settings)
    try:
        keys = namespace_keys(client, settings.namespace)
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start:start + 500])
    finally:
        client.close()
    with connect_pg(database_url(settings)) as conn:
        # The namespace's schema and the per-round schemas measurements derive from it.
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                            (settings.db_schema, settings.db_schema.replace("_", "\\_") + "\\_%")).fetchall()
        for (schema,) in rows:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _drop_broker_queues(settings: Settings) -> None:
    from workers.broker import QUEUES, broker_kind

    if settings.broker_url is not None and broker_kind(settings) == "rabbitmq":
        from workers.rabbitmq import RabbitQueues

        RabbitQueues(settings.broker_url, settings.namespace).delete(QUEUES)


@contextmanager
def open_sandbox(settings: Settings) -> Iterator[Sandbox]:
    """Connections to a freshly claimed namespace, which is dropped when the block exits."""
    client = connect_redis(settings)
    conn: psycopg.Connection[Any] | None = None
    claimed = False
    try:
        ensure_durable(client, settings.allow_volatile)
        url = database_url(settings)
        conn = connect_pg(url)
        ensure_unused(settings, client, conn)
        claimed = True
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(settings.db_schema)))
        yield Sandbox(settings, client, conn, url)
    finally:
        if conn is not None:
            conn.close()
        client.close()
        if claimed:
            drop_namespace(settings)
