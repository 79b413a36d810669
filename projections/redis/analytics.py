"""Per-day analytics of an org: event counts per type (exact), unique agents and users (HyperLogLog).

Choices, and why:

- Days are UTC dates of the event's own `occurred_at`. Per partition, day and org:
  `P:n:<day>:<org>` counts events per type, `P:a:<day>:<org>` and `P:u:<day>:<org>` are
  HyperLogLogs of agent ids and user ids (see projections/lua/analytics.lua).
- Users come from event data: MemoryRecalled.user_id, SessionIngested.user_id and a
  string `user_id` in MemoryStored metadata. Counts and HyperLogLogs do not depend on
  the order or grouping of events, so a batch is folded in Python first (one HINCRBY
  per type and day, one PFADD per day with all of its ids) and sent as one script call.
- Forgetting a memory changes nothing here: the events happened.
- A user talks to several agents, whose events land in several partitions, so unique
  counts merge HyperLogLogs across partitions: the query copies each partition's
  registers into scratch keys sharing one hash tag and lets PFCOUNT union them (three
  round trips whatever the range). Counts over a range are the union, not the sum.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any


from ledger.connections import RedisClient, node_client
from ledger import events as ev
from ledger.events import RecordedEvent

from .base import Arg, RedisProjection, pipelined
from .keys import ModelKeys
from .trending import live_labels

MAX_DAYS = 366
SCRATCH_TTL_MS = 60_000  # scratch keys outlive a crashed query by at most this


def day_of(moment: datetime) -> str:
    """YYYYMMDD of the UTC date of a time."""
    at = moment if moment.utcoffset() == timedelta(0) else moment.astimezone(timezone.utc)
    return f"{at.year:04d}{at.month:02d}{at.day:02d}"


def user_of(data: ev.Payload) -> str | None:
    """The end user an event speaks for, if its data names one."""
    if isinstance(data, (ev.MemoryRecalled, ev.SessionIngested)):
        return data.user_id
    if isinstance(data, ev.MemoryStored):
        user = data.metadata.get("user_id")
        return user if isinstance(user, str) and user else None
    return None


@dataclass
class _Day:
    types: Counter[str] = field(default_factory=Counter)
    agents: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


class AnalyticsProjection(RedisProjection):
    """Counters and HyperLogLogs per day (see the module docstring; generations in `base`)."""

    name = "analytics"
    version = 1
    script = "analytics.lua"

    def arguments(self, partition: int, events: Sequence[RecordedEvent]) -> list[Arg]:
        days: dict[str, _Day] = {}
        for r in events:
            e = r.event
            group = days.get(key := f"{day_of(e.occurred_at)}:{e.org_id}")
            if group is None:
                group = days[key] = _Day()
            group.types[e.type] += 1
            group.agents.add(e.agent_id)
            if (user := user_of(e.data)) is not None:
                group.users.add(user)
        args: list[Arg] = []
        for key, group in days.items():
            args += [key, len(group.types), *(x for pair in group.types.items() for x in pair)]
            args += [len(group.agents), *group.agents, len(group.users), *group.users]
        return args


# -- the query side ------------------------------------------------------------------------


@dataclass(frozen=True)
class DayStats:
    day: date
    events: dict[str, int]
    agents: int
    users: int

    @property
    def total(self) -> int:
        return sum(self.events.values())


@dataclass(frozen=True)
class AnalyticsReport:
    org_id: str
    first: date
    last: date
    days: list[DayStats]
    agents: int  # distinct over the whole range
    users: int

    @property
    def events(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for d in self.days:
            total.update(d.events)
        return dict(sorted(total.items()))

    def as_json(self) -> dict[str, Any]:
        return {"org": self.org_id, "from": self.first.isoformat(), "to": self.last.isoformat(),
                "agents": self.agents, "users": self.users, "events": self.events,
                "days": [{"day": d.day.isoformat(), "events": d.events, "agents": d.agents, "users": d.users}
                         for d in self.days]}


class Analytics:
    """Reports over a range of days, read from the live generation."""

    def __init__(self, client: RedisClient, namespace: str, partitions: int):
        self.client, self.namespace, self.partitions = client, namespace, partitions
        self.keys = ModelKeys(namespace, AnalyticsProjection.name)

    def report(self, org_id: str, first: date, last: date) -> AnalyticsReport:
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        if not 1 <= len(days) <= MAX_DAYS:
            raise ValueError(f"the range is 1 to {MAX_DAYS} days, from the first day to the last; "
                             f"got {first} to {last}")
        labels = live_labels(self.client, self.keys, self.partitions, f"v{AnalyticsProjection.version}")
        cells = [(self.keys.prefix(p, label), f"{d:%Y%m%d}:{org_id}") for d in days for p, label in enumerate(labels)]

        def read(pipe: Any) -> None:
            for prefix, suffix in cells:
                pipe.hgetall(f"{prefix}:n:{suffix}")
                pipe.get(f"{prefix}:a:{suffix}")
                pipe.get(f"{prefix}:u:{suffix}")
        replies = pipelined(self.client, read, "reading analytics")
        per_day = len(labels) * 3
        counts = [_sum_counts(replies[i * per_day:(i + 1) * per_day:3]) for i in range(len(days))]
        agents, users = self._unions([replies[1::3], replies[2::3]], len(days))
        stats = [DayStats(d, counts[i], agents[i], users[i]) for i, d in enumerate(days)]
        return AnalyticsReport(org_id, first, last, stats, agents[-1], users[-1])

    def _unions(self, families: list[list[bytes | None]], days: int) -> list[list[int]]:
        """Per family of registers (one per day and partition): each day's union, then the range's."""
        tag = f"{{{self.namespace}:q:{uuid.uuid4().hex}}}"
        scratch: list[list[list[str]]] = []  # family -> day -> scratch keys
        writes: list[tuple[str, bytes]] = []
        for f, registers in enumerate(families):
            per_day = len(registers) // days
            scratch.append([])
            for d in range(days):
                keys = []
                for i, value in enumerate(registers[d * per_day:(d + 1) * per_day]):
                    if value:
                        keys.append(f"{tag}:{f}:{d}:{i}")
                        writes.append((keys[-1], value))
                scratch[f].append(keys)

        def union(pipe: Any) -> None:
            for key, value in writes:
                pipe.set(key, value, px=SCRATCH_TTL_MS)
            for days_keys in scratch:
                for keys in [*days_keys, [k for ks in days_keys for k in ks]]:
                    if keys:
                        pipe.pfcount(*keys)
                    else:
                        pipe.echo("0")
            if writes:
                pipe.unlink(*(k for k, _ in writes))
        # Every scratch key has the one tag, so on a Redis Cluster its node runs the whole union
        # (a cluster pipeline refuses multi-key PFCOUNT).
        replies = pipelined(node_client(self.client, tag), union, "counting unique ids")[len(writes):]
        return [[int(x) for x in replies[f * (days + 1):(f + 1) * (days + 1)]] for f in range(len(families))]


def _sum_counts(hashes: list[dict[bytes, bytes]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for h in hashes:
        for k, v in h.items():
            total[k.decode()] += int(v)
    return dict(sorted(total.items()))
