"""The projector's appliers: two handles of a PostgreSQL projection apply different partitions
at the same time (projections.runtime._Appliers), and the read model is the one a single
handle builds, to the byte.

Partitions share no rows but `tag_stats` (one row per org and tag, added to by every
partition of the org): the data below makes every partition touch the same tags, so the two
handles' transactions take turns on those rows while both run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import psycopg
import pytest
from psycopg import sql

from commands import ForgetMemory, StoreMemory, TagMemory, UpdateMemory, open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.errors import ProjectionError
from ledger.events import RecordedEvent
from projections import Projector, ProjectorOptions, open_projection, run_projection
from projections.fold import MemoryChange
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection
from replay.rebuild import Progress, rebuild

AGENTS = 12


class Recording(MemoriesProjection):
    """Notes which handle applied each batch, and when."""

    applied: list[tuple[int, int, float, float]] = []  # handle, partition, start, end
    closed: set[int] = set()

    def close(self) -> None:
        super().close()
        Recording.closed.add(id(self))

    def apply(self, partition: int, events: Sequence[RecordedEvent], after: str) -> None:
        start = time.perf_counter()
        super().apply(partition, events, after)
        Recording.applied.append((id(self), partition, start, time.perf_counter()))


class BugOnTrigger(MemoriesProjection):
    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> tuple[MemoryChange, ...]:
        if any(getattr(r.event.data, "content", "") == "trigger" for r in events):
            raise KeyError("memory_kind")
        return super().write(cur, events)


def _backlog(settings: Settings) -> set[int]:
    """Stores, updates, tags and forgets of AGENTS agents of one org (so of most partitions),
    every memory tagged with the same few tags; the partitions used."""
    bus = open_bus(settings)
    partitions = set()
    for i in range(40):
        commands = [StoreMemory(org_id="acme", agent_id=f"a{a}", memory_id=f"m{i}", content=f"note {i} of {a}",
                                tags=("shared", f"t{i % 3}")) for a in range(AGENTS)]
        partitions |= {r.partition for r in bus.send_many(commands)}
    for i in range(0, 40, 3):
        bus.send_many([UpdateMemory(org_id="acme", agent_id=f"a{a}", memory_id=f"m{i}", content="changed")
                       for a in range(AGENTS)])
        bus.send_many([TagMemory(org_id="acme", agent_id=f"a{a}", memory_id=f"m{i}", tags=("late",))
                       for a in range(AGENTS)])
    for i in range(0, 40, 7):
        bus.send_many([ForgetMemory(org_id="acme", agent_id=f"a{a}", memory_id=f"m{i}") for a in range(AGENTS)])
    return partitions


def _project(settings: Settings, appliers: int) -> dict[str, str]:
    """An empty read model, projected to the heads with `appliers` handles; its digest."""
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.db_schema)))
    migrate.upgrade(settings)
    projection = Recording(database_url(settings), settings.db_schema)
    try:
        stats = Projector(open_log(settings), projection, None, ProjectorOptions(batch=25, appliers=appliers)).run(
            until_caught_up=True)
        assert stats.applied == sum(open_log(settings).length(p) for p in range(settings.partitions))
        return projection.digest()
    finally:
        projection.close()


def test_two_appliers_build_the_read_model_one_builds_and_both_work(settings: Settings) -> None:
    # Given a backlog spread over several partitions, every one of them adding to shared tag rows
    assert len(_backlog(settings)) >= 4
    # When it is projected with one handle, then again from empty with two
    Recording.applied = []
    alone = _project(settings, appliers=1)
    assert len({handle for handle, *_ in Recording.applied}) == 1
    Recording.applied = []
    together = _project(settings, appliers=2)
    # Then the read models are identical, table by table
    assert together == alone
    # and both handles applied batches, at times the same moment
    handles = {handle for handle, *_ in Recording.applied}
    assert len(handles) == 2
    spans = sorted(Recording.applied, key=lambda a: a[2])
    assert any(a[0] != b[0] and b[2] < a[3] for a, b in zip(spans, spans[1:])), "the handles never overlapped"
    # and each partition's batches were applied one after another, in order
    for partition in {p for _, p, *_ in Recording.applied}:
        mine = [a for a in Recording.applied if a[1] == partition]
        assert all(earlier[3] <= later[2] for earlier, later in zip(mine, mine[1:]))


def test_a_bug_on_one_handle_stops_the_projector_after_the_other_handle_committed(settings: Settings) -> None:
    # Given events of two agents in different partitions; one agent's second memory trips a bug
    migrate.upgrade(settings)
    bus = open_bus(settings)
    agents = {}
    for a in range(AGENTS):
        partition = bus.send(StoreMemory(org_id="acme", agent_id=f"a{a}", memory_id="first", content="ok")).partition
        agents.setdefault(partition, f"a{a}")
        if len(agents) == 2:
            break
    (bad_partition, bad), (good_partition, good) = sorted(agents.items())
    trigger = bus.send(StoreMemory(org_id="acme", agent_id=bad, memory_id="second", content="trigger"))
    later = bus.send(StoreMemory(org_id="acme", agent_id=good, memory_id="second", content="fine"))
    projection = BugOnTrigger(database_url(settings), settings.db_schema)
    # When the projector runs with two handles
    try:
        with pytest.raises(ProjectionError) as stopped:
            Projector(open_log(settings), projection, None, ProjectorOptions(appliers=2)).run(until_caught_up=True)
        checkpoints = projection.checkpoints()
    finally:
        projection.close()
    # Then it stopped naming the event, before it
    assert f"at partition {trigger.partition} id {trigger.stream_id}" in str(stopped.value)
    assert checkpoints.get(bad_partition) != trigger.stream_id
    # and the other partition, applied beside it, is committed to its head
    assert checkpoints[good_partition] == later.stream_id


def test_only_projections_that_opt_in_open_a_second_handle(settings: Settings) -> None:
    migrate.upgrade(settings)
    memories, trending = MemoriesProjection.open(settings), open_projection("trending", settings)
    try:
        twin = memories.sibling()
        assert twin is not None and twin is not memories and twin.conn is not memories.conn
        # the live model's query-cache invalidation comes along
        assert [type(h) for h in twin.commit_hooks] == [type(h) for h in memories.commit_hooks] != []
        twin.close()
        assert trending.sibling() is None
    finally:
        memories.close()
        trending.close()


def test_the_second_handle_is_closed_when_the_projector_stops(settings: Settings) -> None:
    migrate.upgrade(settings)
    _backlog(settings)
    Recording.applied, Recording.closed = [], set()
    projection = Recording(database_url(settings), settings.db_schema)
    try:
        Projector(open_log(settings), projection, None, ProjectorOptions(batch=50, appliers=2)).run(
            until_caught_up=True)
        twins = {handle for handle, *_ in Recording.applied} - {id(projection)}
        assert len(twins) == 1
        # the projector's own handle stays open (its owner closes it); the sibling's connection is closed
        assert not projection.conn.closed
        assert Recording.closed == twins
    finally:
        projection.close()


def test_a_rebuild_replays_two_partitions_at_once_into_the_same_model(settings: Settings) -> None:
    # Given a live read model of a backlog over several partitions
    migrate.upgrade(settings)
    _backlog(settings)
    run_projection(settings, "memories", until_caught_up=True)
    live = MemoriesProjection(database_url(settings), settings.db_schema)
    try:
        before = live.digest()
    finally:
        live.close()
    # When it is rebuilt with two appliers, in small batches
    lanes: dict[str, set[int]] = {}

    def report(p: Progress) -> None:
        if p.partition >= 0:
            lanes.setdefault(threading.current_thread().name, set()).add(p.partition)

    result = rebuild(settings, "memories", batch=40, report=report, appliers=2)
    # Then the swapped-in model is the one the projector built
    assert result.swapped
    rebuilt = MemoriesProjection(database_url(settings), settings.db_schema)
    try:
        assert rebuilt.digest() == before
    finally:
        rebuilt.close()
    # and two lanes replayed partitions, none of them the same one
    assert len(lanes) == 2, lanes
    first, second = lanes.values()
    assert first and second and not first & second
