"""Typed results of the App that no lower layer defines: health, the ledger at a glance, one memory
with its history, a dropped rebuild shadow. Each has `as_json()` for the surfaces that print JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ledger.health import Probe

if TYPE_CHECKING:
    from ledger.durability import Persistence
    from projections.history import HistoryEntry

__all__ = ["Health", "LedgerInfo", "MemoryView", "PartitionInfo", "Probe", "ShadowDropped", "StatsReport"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Health:
    """Whether the servers answer, how fast, and whether the namespace's read models exist."""

    redis: Probe
    postgresql: Probe
    migrated: bool | None  # None: PostgreSQL did not answer, so it is not known

    @property
    def ok(self) -> bool:
        return self.redis.ok and self.postgresql.ok and bool(self.migrated)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "redis": asdict(self.redis), "postgresql": asdict(self.postgresql),
                "migrated": self.migrated}


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    length: int  # entries in the stream (trimmed ones live on in the archive)
    head: str | None  # the newest entry's id; None while the partition is empty


@dataclass(frozen=True)
class LedgerInfo:
    """The ledger at a glance (`memledger info`)."""

    namespace: str
    partitions: tuple[PartitionInfo, ...]
    redis_version: str | None
    persistence: Persistence
    allow_volatile: bool  # MEMLEDGER_ALLOW_VOLATILE: a volatile Redis is accepted for writes
    query_cache: dict[str, int]  # hits, misses, orgs
    #: working memory's recent-messages cache: hits, misses, hit_rate, sessions_cached, memory_bytes
    session_cache: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        found = self.persistence
        return {"namespace": self.namespace, "partition_count": len(self.partitions),
                "partitions": [asdict(p) for p in self.partitions], "redis_version": self.redis_version,
                "persistence": {"appendonly": found.appendonly, "appendfsync": found.appendfsync,
                                "rdb_save": found.rdb_save, "durable": found.durable,
                                "description": found.describe()},
                "allow_volatile": self.allow_volatile, "query_cache": self.query_cache,
                "session_cache": self.session_cache}


@dataclass(frozen=True)
class MemoryView:
    """One memory: its row (None once forgotten or expired) and, when asked for, its events."""

    memory: Row | None
    history: tuple[HistoryEntry, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"memory": self.memory, "history": [
            {"partition": h.partition, "stream_id": h.stream_id, **h.event.model_dump(mode="json")}
            for h in self.history]}


@dataclass(frozen=True)
class ShadowDropped:
    """What `replay discard` did: `where` names the shadow (a schema, a key generation)."""

    projection: str
    where: str
    existed: bool


@dataclass(frozen=True)
class StatsReport:
    """An org (or one agent of it) in numbers: per agent, per tag, and the memory hierarchy."""

    agents: list[Row]
    tags: list[Row]
    hierarchy: Row

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
