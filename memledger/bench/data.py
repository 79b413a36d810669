"""The benchmark's data set: a store-heavy command mix, generated deterministically from a seed.

The same plan yields the commands the ledger is fed (fresh memory ids per run, so stores
never collide), the encoded event bodies the raw baselines write (built by `decide()` and
`encode`, so raw XADD carries the bytes the ledger writes), and the rows a memories
read model holds once every event is applied.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from commands.decide import Mode, SubjectState, check, decide, fold
from commands.models import COMMAND_ADAPTER, Command
from ledger import events as ev
from ledger.codec import encode
from ledger.partitions import partition_for

__all__ = ["DataSet", "MemoryRow", "Step", "build_dataset"]

ORGS = 4
AGENTS_PER_ORG = 6
MIX: tuple[tuple[str, int], ...] = (
    ("StoreMemory", 70), ("UpdateMemory", 12), ("TagMemory", 8), ("RecordRecall", 6), ("ForgetMemory", 4))
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
RAW_RUN = "r000"

WORDS = (
    "the user prefers short answers about their project deadline and wants reminders before each "
    "meeting with the design team while travelling next week to berlin for the quarterly review "
    "budget approved pending legal sign off customer reported latency spikes after the last deploy "
    "remember to use metric units and formal tone in emails drafts should mention the migration plan "
    "allergic to peanuts likes espresso works from home on fridays daughter starts school in september "
    "invoice numbers follow the pattern year month sequence agent should escalate refunds above limit"
).split()
TAGS = tuple(
    "work personal travel billing support project:alpha project:beta health family food preference "
    "deadline meeting email legal finance infra oncall release customer:acme customer:globex "
    "language tone schedule reminder security privacy hiring onboarding research".split())
SOURCES = ("chat", "email", "tool", "import", "summary")
MEMORY_TYPES = ("note", "fact", "preference", "decision", "summary")


@dataclass(frozen=True, slots=True)
class Step:
    """One command of the plan in JSON form, naming its memory by index (ids are per run)."""

    fields: Mapping[str, Any]
    memory: int


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """A memory as a memories read model holds it."""

    memory_id: str
    org_id: str
    agent_id: str
    content: str
    tags: tuple[str, ...]
    importance: float
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int

    def as_tuple(self) -> tuple[Any, ...]:
        """Column order of the bench memories table."""
        return (self.memory_id, self.org_id, self.agent_id, self.content, list(self.tags), self.importance,
                self.metadata, self.created_at, self.updated_at, self.version)


@dataclass(frozen=True)
class DataSet:
    """The plan and everything derived from it for the raw baselines (run `r000`)."""

    seed: int
    steps: tuple[Step, ...]
    bodies: tuple[bytes, ...]
    versions: tuple[int, ...]
    partitions: tuple[int, ...]
    rows: tuple[MemoryRow, ...]
    initial_rows: tuple[MemoryRow, ...]  # as first stored, for memories that changed later
    counts: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.steps)

    @staticmethod
    def memory_id(run: str, memory: int) -> str:
        return f"mem-{run}-{memory:06d}"

    def commands(self, run: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The commands in JSON form, with memory ids unique to `run`."""
        return [{**s.fields, "memory_id": self.memory_id(run, s.memory)} for s in self.steps[:limit]]

    def models(self, run: str, limit: int | None = None) -> list[Command]:
        """The commands as validated models, with memory ids unique to `run`."""
        return [COMMAND_ADAPTER.validate_python(c) for c in self.commands(run, limit)]

    @property
    def body_bytes(self) -> int:
        return sum(len(b) for b in self.bodies)


def build_dataset(seed: int, size: int, partitions: int) -> DataSet:
    """The data set of `size` commands for a ledger of `partitions` partitions."""
    rng = random.Random(seed)
    steps = _plan(rng, size)
    draft = DataSet(seed, tuple(steps), (), (), (), (), ())
    events = _decide_all(draft.models(RAW_RUN), rng)
    versions = _versions(draft.commands(RAW_RUN), [s.memory for s in steps])
    rows, initial = _fold_rows(events, versions)
    counts = Counter(str(step.fields["type"]) for step in steps)
    return replace(
        draft, bodies=tuple(encode(e) for e in events), versions=tuple(versions),
        partitions=tuple(partition_for(e.org_id, e.agent_id, partitions) for e in events),
        rows=rows, initial_rows=initial, counts=dict(counts))


def _plan(rng: random.Random, size: int) -> list[Step]:
    agents = [(f"org-{o:02d}", f"agent-{o:02d}-{a:02d}") for o in range(ORGS) for a in range(AGENTS_PER_ORG)]
    busy = _cumulative([1 / (k + 1) for k in range(len(agents))])  # a few agents do most of the work
    kinds, mix = [k for k, _ in MIX], _cumulative([w for _, w in MIX])
    live: dict[int, list[int]] = defaultdict(list)
    steps: list[Step] = []
    stored = 0
    for _ in range(size):
        agent = rng.choices(range(len(agents)), cum_weights=busy)[0]
        kind = rng.choices(kinds, cum_weights=mix)[0] if live[agent] else "StoreMemory"
        if kind == "StoreMemory":
            memory, stored = stored, stored + 1
            live[agent].append(memory)
        else:
            memory = rng.choice(live[agent])
            if kind == "ForgetMemory":
                live[agent].remove(memory)
        org_id, agent_id = agents[agent]
        steps.append(Step({"type": kind, "org_id": org_id, "agent_id": agent_id, **_fields(rng, kind)}, memory))
    return steps


def _cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _fields(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "StoreMemory":
        return {"content": _content(rng), "memory_type": rng.choice(MEMORY_TYPES), "tags": _tags(rng, 0, 4),
                "importance": round(rng.random(), 2), "metadata": _metadata(rng)}
    if kind == "UpdateMemory":
        return rng.choice(({"content": _content(rng)}, {"importance": round(rng.random(), 2)},
                           {"metadata": _metadata(rng)}, {"content": _content(rng), "importance": 0.9}))
    if kind == "TagMemory":
        return {"tags": _tags(rng, 1, 3)}
    if kind == "RecordRecall":
        return {"user_id": f"user-{rng.randrange(200):03d}", "query": " ".join(rng.sample(WORDS, rng.randint(2, 6)))}
    return {"reason": rng.choice(("user request", "outdated", "duplicate", None))}


def _content(rng: random.Random) -> str:
    target = rng.randint(100, 400)
    text = " ".join(rng.choices(WORDS, k=target // 4))
    while len(text) < target:
        text += " " + rng.choice(WORDS)
    return text[:target].strip()


def _tags(rng: random.Random, low: int, high: int) -> list[str]:
    return rng.sample(TAGS, rng.randint(low, high))


def _metadata(rng: random.Random) -> dict[str, Any]:
    return {"source": rng.choice(SOURCES), "turn": rng.randrange(1, 500), "confidence": round(rng.random(), 3)}


def _decide_all(models: Sequence[Command], rng: random.Random) -> list[ev.Event]:
    events: list[ev.Event] = []
    for index, command in enumerate(models):
        now = EPOCH + timedelta(milliseconds=50 * index)
        events += decide(command, now, lambda: _seeded_uuid7(rng, now)).events
    return events


def _seeded_uuid7(rng: random.Random, at: datetime) -> uuid.UUID:
    """A UUIDv7 for `at` whose random bits come from the seeded generator."""
    ms = int(at.timestamp() * 1000)
    value = ms << 80 | rng.getrandbits(80) & ~(0xF << 76) & ~(0x3 << 62)
    return uuid.UUID(int=value | 0x7 << 76 | 0x2 << 62)


def _versions(commands: Sequence[Mapping[str, Any]], memories: Sequence[int]) -> list[int]:
    """The subject version the append script assigns to each event; fails on an invalid plan."""
    modes: dict[str, Mode] = {"StoreMemory": "create", "UpdateMemory": "change", "TagMemory": "change",
             "RecordRecall": "touch", "ForgetMemory": "end"}
    states: dict[int, SubjectState] = defaultdict(SubjectState)
    out: list[int] = []
    for command, memory in zip(commands, memories):
        mode = modes[command["type"]]
        problem = check(states[memory], mode, None)
        if problem is not None:
            raise AssertionError(f"data set plan is invalid at {command['memory_id']}: {problem}")
        states[memory] = fold(states[memory], mode)
        out.append(states[memory].version)
    return out


def _fold_rows(events: Sequence[ev.Event], versions: Sequence[int]) -> tuple[tuple[MemoryRow, ...], tuple[MemoryRow, ...]]:
    """Final rows of the live memories, and the first-stored rows of those that changed."""
    current: dict[str, MemoryRow] = {}
    first: dict[str, MemoryRow] = {}
    for event, version in zip(events, versions):
        row = _apply(current.get(event.subject_id), event, version)
        if row is None:
            current.pop(event.subject_id, None)
        else:
            current[event.subject_id] = row
            first.setdefault(event.subject_id, row)
    initial = tuple(first[m] for m, row in current.items() if row.version > 1)
    return tuple(current.values()), initial


def _apply(row: MemoryRow | None, event: ev.Event, version: int) -> MemoryRow | None:
    data, at = event.data, event.occurred_at
    if isinstance(data, ev.MemoryStored):
        return MemoryRow(event.subject_id, event.org_id, event.agent_id, data.content, data.tags,
                         data.importance, dict(data.metadata), at, at, version)
    if row is None or isinstance(data, ev.MemoryForgotten):
        return None
    if isinstance(data, ev.MemoryUpdated):
        return replace(row, content=data.content or row.content, updated_at=at, version=version,
                       importance=row.importance if data.importance is None else data.importance,
                       metadata=row.metadata if data.metadata is None else dict(data.metadata))
    if isinstance(data, ev.MemoryTagged):
        return replace(row, tags=tuple(dict.fromkeys(row.tags + data.tags)), updated_at=at, version=version)
    return row
