"""Leases: one active projector per (projection, partition), taken over when the holder dies.

A lease is a key with a TTL that the holder renews, beside the partition's keys on the
log's server (`EventLog.partition_key`), taken and released by one script call each
(projections/lua/lease.lua). If the holder stops (SIGKILL, crash, lost network) the key
expires and another projector takes it. Leases are an optimisation against double work, not
the safety net: each projection's checkpoint is a compare-and-set, so a stale holder that
still writes is fenced out.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Self

from ledger.eventlog import EventLog
from ledger.settings import Settings

__all__ = ["Leases", "owner_token"]


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    """The leases of one projection, held under `token`.

    Parameters:
        log: the ledger whose partitions are leased; the leases live on its server.
        ttl_ms: how long a lease outlives its holder's last renewal.
        owns_log: close `log` with the leases (`open` gives them a connection of their own).
    """

    def __init__(self, log: EventLog, projection: str, ttl_ms: int, token: str | None = None,
                 owns_log: bool = False):
        self.log, self.projection, self.ttl_ms, self.owns_log = log, projection, ttl_ms, owns_log
        self.token = token or owner_token()
        self._script = log.script("lease.lua", package="projections")

    @classmethod
    def open(cls, settings: Settings, projection: str) -> Self:
        """The leases of `projection` on the configured ledger (a connection of their own)."""
        from ledger import open_log

        return cls(open_log(settings), projection, settings.lease_ttl_ms, owns_log=True)

    def key(self, partition: int) -> str:
        return self.log.partition_key(partition, f"lease:{self.projection}")

    def take(self, partitions: list[int]) -> set[int]:
        """Take or renew each partition's lease; returns those now held. One round trip."""
        replies = self._script.run_many([([self.key(p)], ["take", self.token, self.ttl_ms]) for p in partitions])
        return {p for p, ok in zip(partitions, replies) if ok == 1}

    def release(self, partitions: list[int]) -> None:
        if partitions:
            self._script.run_many([([self.key(p)], ["release", self.token, 0]) for p in partitions])

    def close(self) -> None:
        """Close the log's connection if the leases own it (the leases themselves expire, or were released)."""
        if self.owns_log:
            self.log.close()
