"""Partitioning and the Redis key layout of one namespace.

Every key of a partition carries the hash tag `{<ns>:p<N>}`, so in Redis Cluster they
share a slot and one Lua script may touch them all.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def partition_for(org_id: str, agent_id: str, partitions: int) -> int:
    """Stable across processes and versions (CRC-32, not Python's salted hash)."""
    return zlib.crc32(f"{org_id}/{agent_id}".encode()) % partitions


@dataclass(frozen=True)
class Keys:
    namespace: str

    def tag(self, partition: int) -> str:
        return f"{{{self.namespace}:p{partition}}}"

    def stream(self, partition: int) -> str:
        return f"{self.tag(partition)}:stream"

    def subjects(self, partition: int) -> str:
        return f"{self.tag(partition)}:subjects"

    def trimmed(self, partition: int) -> str:
        """String: the newest stream id a trim removed from the partition (ledger/lua/trim.lua)."""
        return f"{self.tag(partition)}:trimmed"

    def idempotency(self, partition: int, org_id: str, agent_id: str, key: str) -> str:
        return f"{self.tag(partition)}:idem:{org_id}/{agent_id}/{key}"

    @property
    def meta(self) -> str:
        """Hash holding the namespace's fixed facts (the partition count)."""
        return f"{{{self.namespace}}}:meta"

    def rate(self, org_id: str) -> str:
        return f"{{{self.namespace}:rate:{org_id}}}"
