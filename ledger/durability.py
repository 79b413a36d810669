"""The start-up check that the ledger's Redis keeps what it acknowledges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from .connections import RedisClient
from .errors import DurabilityError, StoreUnavailable


@dataclass(frozen=True)
class Persistence:
    appendonly: bool
    appendfsync: str
    rdb_save: str

    @property
    def durable(self) -> bool:
        return self.appendonly and self.appendfsync in ("always", "everysec")

    def describe(self) -> str:
        aof = f"AOF on (fsync {self.appendfsync})" if self.appendonly else "AOF off"
        return f"{aof}; RDB save {self.rdb_save or 'off'!r}"


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def read_persistence(client: RedisClient) -> Persistence:
    """The server's persistence; of a Redis Cluster, the least durable of its masters' (every
    master holds some partitions, so one volatile master can lose acknowledged events)."""
    if isinstance(client, RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        found = [_read_node(client.get_redis_connection(node)) for node in primaries]
        return min(found, key=lambda p: p.durable)
    return _read_node(client)


def _read_node(client: redis.Redis) -> Persistence:
    try:
        reply: dict[Any, Any] = {**client.config_get("append*"), **client.config_get("save")}
        conf = {_text(k): _text(v) for k, v in reply.items()}
    except redis.ResponseError as e:
        raise DurabilityError(
            f"cannot read the Redis persistence settings ({e}); the ledger must know that "
            "AOF is on. Allow CONFIG GET, or set MEMLEDGER_ALLOW_VOLATILE=1 if you accept the risk"
        ) from e
    except redis.ConnectionError as e:
        raise StoreUnavailable(f"Redis is unreachable: {e}") from e
    return Persistence(conf.get("appendonly") == "yes", conf.get("appendfsync", ""), conf.get("save", ""))


def ensure_durable(client: RedisClient, allow_volatile: bool) -> Persistence:
    """Refuse a Redis that would lose acknowledged events, unless explicitly allowed."""
    found = read_persistence(client)
    if not found.durable and not allow_volatile:
        raise DurabilityError(
            f"Redis persistence is not durable ({found.describe()}): a restart would lose "
            "acknowledged events. Turn AOF on (`redis-cli CONFIG SET appendonly yes` and "
            "`appendonly yes` with `appendfsync everysec` in redis.conf), or set "
            "MEMLEDGER_ALLOW_VOLATILE=1 for tests and demos that may lose data"
        )
    return found
