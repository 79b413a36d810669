"""Seeded command workloads for projection tests (a store-heavy mix over several orgs)."""

from __future__ import annotations

import random

import psycopg

from commands import (
    Command,
    ForgetMemory,
    IngestSession,
    RecordRecall,
    StoreMemory,
    TagMemory,
    UntagMemory,
    UpdateMemory,
)
from commands.bus import CommandBus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.events import Message
from projections import Projector
from projections.postgres import migrate
from projections.postgres.digest import digests
from projections.postgres.memories import MemoriesProjection

TAGS = ["food", "travel", "work", "health", "family", "music", "urgent", "billing"]


def workload(n: int, seed: int = 1, orgs: int = 3, agents: int = 5) -> list[Command]:
    """`n` valid commands: ~65% stores, then updates, tags, untags, recalls, forgets, sessions."""
    rnd = random.Random(seed)
    live: list[tuple[str, str, str]] = []
    out: list[Command] = []
    for i in range(n):
        org, agent = f"org{rnd.randrange(orgs)}", f"agent{rnd.randrange(agents)}"
        r = rnd.random()
        if r < 0.65 or len(live) < 10:
            c: Command = StoreMemory(
                org_id=org, agent_id=agent, memory_id=f"m{seed}-{i}", content=f"memory {i}: " + rnd.choice(
                    ["likes green tea", "flies to Lisbon in May", "prefers short answers", "works on billing"]),
                tags=tuple(rnd.sample(TAGS, rnd.randrange(4))), importance=round(rnd.random(), 3),
                metadata={"user_id": f"u{rnd.randrange(50)}"})
            live.append((org, agent, c.memory_id))  # type: ignore[attr-defined]
        elif r < 0.97:
            org, agent, mid = rnd.choice(live)
            c = _change(rnd, org, agent, mid, r)
            if isinstance(c, ForgetMemory):
                live.remove((org, agent, mid))
        else:
            c = IngestSession(org_id=org, agent_id=agent, session_id=f"s{seed}-{i}",
                              transcript=(Message(role="user", content="remember I like jazz"),), user_id="u1")
        out.append(c)
    return out


def _change(rnd: random.Random, org: str, agent: str, mid: str, r: float) -> Command:
    if r < 0.75:
        return UpdateMemory(org_id=org, agent_id=agent, memory_id=mid, importance=round(rnd.random(), 3),
                            content=rnd.choice([None, f"revised {rnd.randrange(1000)}"]))
    if r < 0.83:
        return TagMemory(org_id=org, agent_id=agent, memory_id=mid, tags=(rnd.choice(TAGS),))
    if r < 0.87:
        return UntagMemory(org_id=org, agent_id=agent, memory_id=mid, tags=(rnd.choice(TAGS),))
    if r < 0.94:
        return RecordRecall(org_id=org, agent_id=agent, memory_id=mid, user_id=f"u{rnd.randrange(50)}")
    return ForgetMemory(org_id=org, agent_id=agent, memory_id=mid)


def conversations(n: int, seed: int = 1, orgs: int = 3, agents: int = 5, sessions: int = 12) -> list[Command]:
    """`n` AppendMessage commands over a few conversations, interleaved (working memory)."""
    from commands import AppendMessage

    rnd = random.Random(seed)
    out: list[Command] = []
    for i in range(n):
        s = rnd.randrange(sessions)
        session = f"c{seed}-{s}"
        out.append(AppendMessage(org_id=f"org-{s % orgs}", agent_id=f"agent-{s % agents}", session_id=session,
                                 role=rnd.choice(["user", "assistant"]), content=f"message {i} of {session}"))
    return out


def send_all(bus: CommandBus, commands: list[Command], batch: int = 1000) -> int:
    """Send every command; returns how many were accepted (all should be)."""
    accepted = 0
    for i in range(0, len(commands), batch):
        accepted += sum(1 for o in bus.send_many(commands[i:i + batch]) if not isinstance(o, Exception))
    return accepted


def live_digest(settings: Settings) -> dict[str, tuple[int, str]]:
    """Digests of the namespace's memories tables as they are now."""
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        return digests(conn, MemoriesProjection.tables)


def clean_digest(settings: Settings) -> dict[str, tuple[int, str]]:
    """Digests of the memories tables projected in one clean run into a scratch schema."""
    schema = settings.db_schema + "_clean"
    migrate.upgrade(settings, schema=schema)
    projection = MemoriesProjection(database_url(settings), schema)
    Projector(open_log(settings), projection, None).run(until_caught_up=True)
    result = digests(projection.conn, MemoriesProjection.tables)
    projection.close()
    return result
