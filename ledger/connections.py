"""Where the servers are, resolved from settings (or the embedded default), and Redis clients.

PostgreSQL connections are opened (and their errors translated) in one place,
`ledger.postgres.connect`, which takes settings or one of the URLs resolved here.
"""

from __future__ import annotations

from functools import cache

import redis

from .embedded import embedded_database_url, embedded_redis_url
from .settings import Settings


@cache
def redis_url(settings: Settings) -> str:
    return settings.redis_url or embedded_redis_url(settings.home)


@cache
def database_url(settings: Settings) -> str:
    """The libpq URL (postgresql://...) of the configured or embedded database."""
    url = settings.database_url or embedded_database_url(settings.home)
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def read_database_url(settings: Settings) -> str:
    """Where read-only queries go: the replica (`database_read_url`), else the database itself."""
    url = settings.database_read_url
    return database_url(settings) if url is None else url.replace("postgresql+psycopg://", "postgresql://", 1)


def sqlalchemy_url(settings: Settings) -> str:
    return database_url(settings).replace("postgresql://", "postgresql+psycopg://", 1)


def connect_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(redis_url(settings), health_check_interval=30)
