"""Leases: one active projector per (projection, partition), taken over when the holder dies.

A lease is a key with a TTL that the holder renews, beside the partition's keys on the
log's server (`EventLog.partition_key`), taken and released by one script call each
(projections/lua/lease.lua). If the holder stops (SIGKILL, crash, lost network) the key
expires and another projector takes it. Leases are an optimisation against double work, not
the safety net: each projection's checkpoint is a compare-and-set, so a stale holder that
still writes is fenced out.

Sharing: the processes of one projection register as members (projections/lua/members.lua,
with the same TTL), and each holds at most its fair share, ceil(partitions / members). A
process that joins gets nothing at first; at their next round the others release what they
hold above the new share (their highest partitions), and it takes those. A process that
dies stops counting when its registration expires, at about the time its leases do, and
the others take its partitions at their next round: within the TTL plus one renewal
interval of the kill.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Sequence
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
        self._members = log.script("members.lua", package="projections")

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

    @property
    def members_key(self) -> str:
        # One key for the whole projection; partition 0's hash tag puts it on a known slot.
        return self.log.partition_key(0, f"members:{self.projection}")

    def join(self) -> int:
        """Register this process as a live member (until the TTL runs out); the number of live members."""
        return int(self._members.run([self.members_key], ["join", self.token, self.ttl_ms]))

    def leave(self) -> None:
        self._members.run([self.members_key], ["leave", self.token, 0])

    def take_share(self, partitions: Sequence[int], held: set[int]) -> set[int]:
        """Renew the leases in `held` and take free ones, up to this process's fair share of
        `partitions`; release what it holds beyond the share. Returns the leases now held."""
        share = math.ceil(len(partitions) / max(1, self.join()))
        got = self.take(list(partitions))
        # Keep what was held already (its projector is warm), lowest partitions first.
        keep = set(sorted(got, key=lambda p: (p not in held, p))[:share])
        self.release(sorted(got - keep))
        return keep

    def release(self, partitions: list[int]) -> None:
        if partitions:
            self._script.run_many([([self.key(p)], ["release", self.token, 0]) for p in partitions])

    def close(self) -> None:
        """Close the log's connection if the leases own it (the leases themselves expire, or were released)."""
        if self.owns_log:
            self.log.close()
