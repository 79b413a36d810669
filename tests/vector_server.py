"""An embedded PostgreSQL 16 with pgvector (the `pgserver` package), started once per test
session, for the vector parts of search (the loopback PostgreSQL 15 has no pgvector).

Import its fixtures in a test module: `from vector_server import vector_settings  # noqa: F401`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from ledger import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def pgvector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from pgserver.postgres_server import get_server

    server = get_server(Path(tmp_path_factory.mktemp("pgvector")), cleanup_mode="stop")
    url = str(server.get_uri())
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    yield url
    server.cleanup()


def make_settings(url: str, namespace: str | None = None, **extra: object) -> Settings:
    return Settings(redis_url=REDIS_URL, database_url=url, namespace=namespace or "v" + uuid.uuid4().hex[:10],
                    partitions=2, allow_volatile=True, rate_per_second=1_000_000, rate_burst=1_000_000,
                    **extra)  # type: ignore[arg-type]


def drop(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for pattern in (f"{{{namespace}:*", f"{{{namespace}}}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    client.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                                    (namespace, namespace + "\\_%")).fetchall():
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def vector_settings(pgvector_url: str) -> Iterator[Settings]:
    """Settings for a fresh namespace: Redis on loopback, PostgreSQL with pgvector; removed afterwards."""
    settings = make_settings(pgvector_url)
    yield settings
    drop(pgvector_url, settings.namespace)
