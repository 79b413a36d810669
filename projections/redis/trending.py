"""Trending tags and most-recalled memories per org, in hourly sorted sets.

Choices, and why:

- Buckets are hours of the event's own `occurred_at` (never the projector's clock), per
  org and partition: `P:t:<hour>:<org>` scores tags, `P:m:<hour>:<org>` scores memories
  (see projections/lua/trending.lua for every key). A tag scores one per use: a memory
  stored with it, tagged with it, or recalled while carrying it. A memory scores one per
  recall. Replaying the same events therefore rebuilds the same buckets and rankings.
- Forgetting (or expiry of) a memory takes back everything it added, so the read model
  is always "trending among the memories that still exist". Each memory keeps a small
  hash of its contributions for that.
- A ranking over a window merges the window's buckets: per partition on the server
  (ZUNIONSTORE into a scratch key of the same slot, `trending_top.lua`), then across
  partitions in Python. A memory lives in one partition, so each partition's top N
  (plus ties) is enough for an exact top N of memories; tags span partitions, so every
  tag of the window is fetched (an org has few). Ties rank by name, so rankings are
  deterministic.
- Retention: buckets expire `retention` after their hour ends (an absolute time derived
  from the event; 0 keeps them forever). Windows longer than the retention see less.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


from ledger.connections import RedisClient
from ledger import events as ev
from ledger.events import RecordedEvent
from ledger.scripts import LuaScript
from ledger.settings import Settings

from .base import Arg, RedisProjection, pipelined
from .keys import ModelKeys, text

HOUR = 3600
MAX_WINDOW_HOURS = 24 * 90


def hour_of(moment: datetime) -> int:
    """The hour bucket of a time: whole hours since the Unix epoch."""
    return int(moment.timestamp()) // HOUR


def _operation(r: RecordedEvent) -> tuple[str, str] | None:
    e, d = r.event, r.event.data
    if isinstance(d, ev.MemoryStored):
        return ("S", ",".join(d.tags)) if d.tags else None
    if isinstance(d, ev.MemoryTagged):
        return "T", ",".join(d.tags)
    if isinstance(d, ev.MemoryUntagged):
        return "U", ",".join(d.tags)
    if isinstance(d, ev.MemoryRecalled):
        return "R", f"{e.agent_id}/{e.subject_id}"
    if isinstance(d, (ev.MemoryForgotten, ev.MemoryExpired)):
        return "F", f"{e.agent_id}/{e.subject_id}"
    return None


class TrendingProjection(RedisProjection):
    """Trending tags and memories (see the module docstring; generations in `base`)."""

    name = "trending"
    version = 1
    script = "trending.lua"

    def __init__(self, client: RedisClient, namespace: str, partitions: int, label: str | None = None,
                 retention_hours: int = 0):
        super().__init__(client, namespace, partitions, label)
        self.retention_s = retention_hours * HOUR

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        return {"retention_hours": settings.trending_retention_hours}

    def arguments(self, partition: int, events: Sequence[RecordedEvent]) -> list[Arg]:
        args: list[Arg] = [self.retention_s]
        for r in events:
            op = _operation(r)
            if op is not None:
                e = r.event
                args += [op[0], f"{e.org_id}/{e.agent_id}/{e.subject_id}", e.org_id, hour_of(e.occurred_at), op[1]]
        return args


# -- the query side ------------------------------------------------------------------------


@dataclass(frozen=True)
class RankedMemory:
    agent_id: str
    memory_id: str
    score: int


@dataclass(frozen=True)
class TrendingReport:
    org_id: str
    hours: int
    until: datetime  # the window is the `hours` hour buckets ending with the one holding `until`
    tags: list[tuple[str, int]] = field(default_factory=list)
    memories: list[RankedMemory] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"org": self.org_id, "hours": self.hours, "until": self.until.isoformat(),
                "tags": [{"tag": t, "score": s} for t, s in self.tags],
                "memories": [vars(m) for m in self.memories]}


def _ranked(scores: Counter[str], top: int) -> list[tuple[str, int]]:
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]


def _split_member(member: str) -> tuple[str, str]:
    agent, _, memory = member.partition("/")
    return agent, memory


def live_labels(client: RedisClient, keys: ModelKeys, partitions: int, default: str) -> list[str]:
    """The generation queries read, per partition (the pointer, else the default)."""
    values = pipelined(client, lambda pipe: [pipe.get(keys.pointer(p)) for p in range(partitions)],
                       f"reading the {keys.model} pointers")
    return [text(v) if v else default for v in values]


class Trending:
    """Rankings over a window, read from the live generation."""

    def __init__(self, client: RedisClient, namespace: str, partitions: int):
        self.client, self.partitions = client, partitions
        self.keys = ModelKeys(namespace, TrendingProjection.name)
        self._top = LuaScript(client, "trending_top.lua", package="projections")

    def top(self, org_id: str, hours: int = 24, top: int = 10, until: datetime | None = None) -> TrendingReport:
        if not 1 <= hours <= MAX_WINDOW_HOURS:
            raise ValueError(f"the window is 1 to {MAX_WINDOW_HOURS} hours, not {hours}")
        until = until or datetime.now(timezone.utc)
        last = hour_of(until)
        window = range(last - hours + 1, last + 1)
        labels = live_labels(self.client, self.keys, self.partitions, f"v{TrendingProjection.version}")
        calls = []
        for p, label in enumerate(labels):
            prefix = self.keys.prefix(p, label)
            for family, limit in (("t", 0), ("m", top)):
                calls.append(([f"{prefix}:tmp", *(f"{prefix}:{family}:{h}:{org_id}" for h in window)], [limit]))
        replies = self._top.run_many(calls)
        tags: Counter[str] = Counter()
        memories: Counter[str] = Counter()
        for i, reply in enumerate(replies):
            into = tags if i % 2 == 0 else memories
            for member, score in zip(reply[::2], reply[1::2]):
                into[text(member)] += int(float(score))
        ranked = [RankedMemory(*_split_member(member), score) for member, score in _ranked(memories, top)]
        return TrendingReport(org_id, hours, until, _ranked(tags, top), ranked)
