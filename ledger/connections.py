"""Where the servers are, resolved from settings (or the embedded default), and Redis clients.

PostgreSQL connections are opened (and their errors translated) in one place,
`ledger.postgres.connect`, which takes settings or one of the URLs resolved here.

Redis is one server (`redis://`, `rediss://`, `unix://`) or a Redis Cluster
(`redis+cluster://[user:password@]host:port[,host:port...]`, any of its nodes: the client
discovers the rest). Both clients have the same commands for keys of one slot, which is all
the ledger and the read models send (every key of a partition shares its hash tag);
`RedisClient` names either, and the few places that differ ask `is_cluster`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeAlias, TypeGuard
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, TryAgainError

from .embedded import embedded_database_url, embedded_redis_url
from .errors import ConfigurationError
from .settings import Settings

__all__ = ["CLUSTER_SCHEME", "REDIS_TRANSIENT", "RedisClient", "connect_redis", "database_url", "disconnect", "is_cluster", "node_client",
           "redis_from_url", "redis_url", "sqlalchemy_url"]

#: The URL scheme that selects Redis Cluster.
CLUSTER_SCHEME = "redis+cluster"
#: Redis errors that mean "not now": the server is unreachable, or a cluster lost a master (or
#: is moving a slot) until its node is back. Adapters translate them into StoreUnavailable.
REDIS_TRANSIENT: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, ClusterDownError,
                                                TryAgainError)
#: A client of the ledger's Redis: one server or a cluster.
RedisClient: TypeAlias = "redis.Redis | RedisCluster"


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


def connect_redis(settings: Settings) -> RedisClient:
    return redis_from_url(redis_url(settings), health_check_interval=30)


def redis_from_url(url: str, **options: Any) -> RedisClient:
    """A client for `url`: a `RedisCluster` for `redis+cluster://`, else a `redis.Redis`."""
    if url.startswith(CLUSTER_SCHEME + "://"):
        user, password, nodes = cluster_nodes(url)
        return RedisCluster(startup_nodes=nodes, username=user, password=password, **options)
    return redis.Redis.from_url(url, **options)


def cluster_nodes(url: str) -> tuple[str | None, str | None, list[ClusterNode]]:
    """(user, password, startup nodes) of a `redis+cluster://` URL; a clear error if malformed."""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    nodes = []
    for address in hosts.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"{address!r} in MEMLEDGER_REDIS_URL is not host:port; a cluster URL is "
                "redis+cluster://[user:password@]host:port[,host:port...]")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))  # type: ignore[no-untyped-call]
    if parts.path.strip("/") not in ("", "0"):
        raise ConfigurationError(f"a Redis Cluster has only database 0, not {parts.path.strip('/')!r} "
                                 "(drop the /<db> from MEMLEDGER_REDIS_URL)")
    return unquote(user) or None, unquote(password) or None, nodes


def is_cluster(client: RedisClient) -> TypeGuard[RedisCluster]:
    return isinstance(client, RedisCluster)


def node_client(client: RedisClient, key: str) -> redis.Redis:
    """The client of the one server holding `key`: for a MULTI on keys of one slot, which a
    cluster pipeline would run without redis-py's reply parsing."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        found: redis.Redis = client.get_redis_connection(node)
        return found
    return client


def disconnect(client: RedisClient) -> None:
    """Drop every pooled connection (after a fork, or to recover from a broken one)."""
    if isinstance(client, RedisCluster):
        client.disconnect_connection_pools()  # type: ignore[no-untyped-call]
    else:
        client.connection_pool.disconnect()
