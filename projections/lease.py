"""Leases: one active projector per (projection, partition), taken over when the holder dies.

A lease is a Redis key with a TTL that the holder renews. If the holder stops (SIGKILL,
crash, lost network) the key expires and another projector takes it. Leases are an
optimisation against double work, not the safety net: each projection's checkpoint is a
compare-and-set, so a stale holder that still writes is fenced out.
"""

from __future__ import annotations

import os
import socket
import uuid

from typing import Self

import redis

from ledger.partitions import Keys
from ledger.scripts import LuaScript
from ledger.settings import Settings


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    def __init__(self, client: redis.Redis, keys: Keys, projection: str, ttl_ms: int, token: str | None = None):
        self.client, self.keys, self.projection, self.ttl_ms = client, keys, projection, ttl_ms
        self.token = token or owner_token()
        self._script = LuaScript(client, "lease.lua", package="projections")

    @classmethod
    def open(cls, settings: Settings, projection: str) -> Self:
        """The leases of `projection` on the configured Redis (a connection of their own)."""
        from ledger.connections import connect_redis

        return cls(connect_redis(settings), Keys(settings.namespace), projection, settings.lease_ttl_ms)

    def key(self, partition: int) -> str:
        return f"{self.keys.tag(partition)}:lease:{self.projection}"

    def take(self, partitions: list[int]) -> set[int]:
        """Take or renew each partition's lease; returns those now held. One round trip."""
        replies = self._script.run_many([([self.key(p)], ["take", self.token, self.ttl_ms]) for p in partitions])
        return {p for p, ok in zip(partitions, replies) if ok == 1}

    def release(self, partitions: list[int]) -> None:
        if partitions:
            self._script.run_many([([self.key(p)], ["release", self.token, 0]) for p in partitions])

    def close(self) -> None:
        """Close the Redis connection (the leases themselves expire, or were released)."""
        self.client.close()
