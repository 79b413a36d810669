"""The PostgreSQL projections: folding, dead letters, versions, read-your-writes, outages."""

from __future__ import annotations

import threading

import psycopg
import pytest

from commands import CommandBus, ForgetMemory, StoreMemory, TagMemory, UntagMemory, UpdateMemory, open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.errors import OutdatedReadModel
from projections import MemoryQuery, Projector, ProjectorOptions, open_memory_store, open_projection, run_projection
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection

from workload import clean_digest, live_digest, send_all, workload


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    return settings


@pytest.fixture
def bus(migrated: Settings) -> CommandBus:
    return open_bus(migrated)


def _sql(settings: Settings, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        return conn.execute(query, args).fetchall()


def test_memory_lifecycle_is_folded_into_rows_tags_and_stats(bus: CommandBus, migrated: Settings) -> None:
    # Given a memory stored, updated, tagged, untagged, and another stored then forgotten
    bus.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m1", content="likes tea", tags=("food",)))
    bus.send(UpdateMemory(org_id="acme", agent_id="bot", memory_id="m1", importance=0.9, content="likes green tea"))
    bus.send(TagMemory(org_id="acme", agent_id="bot", memory_id="m1", tags=("drink", "food")))
    bus.send(UntagMemory(org_id="acme", agent_id="bot", memory_id="m1", tags=("food",)))
    bus.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m2", content="temp", tags=("food",)))
    bus.send(ForgetMemory(org_id="acme", agent_id="bot", memory_id="m2"))
    # When the projection catches up
    run_projection(migrated, "memories", until_caught_up=True)
    # Then the row, tag counts and agent statistics follow the events
    assert _sql(migrated, "SELECT memory_id, content, importance, tags, version FROM memories") == [
        ("m1", "likes green tea", pytest.approx(0.9), ["drink"], 4)]
    assert dict(_sql(migrated, "SELECT tag, memories FROM tag_stats WHERE memories <> 0")) == {"drink": 1}
    assert _sql(migrated, "SELECT live_memories, stored, updated, forgotten FROM agent_stats") == [(1, 2, 3, 1)]


def test_poison_event_is_dead_lettered_and_later_events_apply(bus: CommandBus, migrated: Settings) -> None:
    log = bus.log
    receipt = bus.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="before", content="ok"))
    # An entry no current code can decode (as a bug or a bad manual write might leave)
    log.client.xadd(log.keys.stream(receipt.partition), {"v": 1, "e": b"{not json"})
    bus.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="after", content="still applied"))
    stats = run_projection(migrated, "memories", until_caught_up=True)
    assert stats.dead_lettered == 1
    assert sorted(r[0] for r in _sql(migrated, "SELECT memory_id FROM memories")) == ["after", "before"]
    [(error, projection)] = _sql(migrated, "SELECT error, projection FROM dead_letters")
    assert "undecodable" in str(error) and projection == "memories"


def test_outdated_read_model_is_refused_with_the_rebuild_command(migrated: Settings) -> None:
    _sql(migrated, "INSERT INTO projection_versions (projection, version) VALUES ('memories', 0) RETURNING 1")
    projection = open_projection("memories", migrated)
    with pytest.raises(OutdatedReadModel, match="memledger replay rebuild memories"):
        projection.ensure_current()
    projection.close()


def test_wait_for_gives_read_your_writes(bus: CommandBus, migrated: Settings) -> None:
    stop = threading.Event()
    runner = threading.Thread(target=run_projection, args=(migrated, "memories"), kwargs={"stop": stop})
    runner.start()
    store = open_memory_store(migrated)
    try:
        for i in range(20):
            receipt = bus.send(StoreMemory(org_id="acme", agent_id="bot", memory_id=f"ryw{i}", content=f"fact {i}"))
            store.wait_for(receipt, timeout=10)
            assert store.get("acme", f"ryw{i}")["content"] == f"fact {i}"
    finally:
        stop.set()
        runner.join()
        store.close()


def test_projector_rides_out_a_lost_database_connection(bus: CommandBus, migrated: Settings) -> None:
    send_all(bus, workload(600, seed=3))
    projection = MemoriesProjection(database_url(migrated), migrated.db_schema)
    projector = Projector(open_log(migrated), projection, None, ProjectorOptions(batch=100))
    killed = []

    def kill_backend(_stats: object) -> None:
        # As a PostgreSQL restart would: the server drops the projector's connection.
        if not killed:
            killed.append(_sql(migrated, "SELECT pg_terminate_backend(%s)", projection.conn.info.backend_pid))

    stats = projector.run(until_caught_up=True, on_batch=kill_backend)
    projection.close()
    assert killed and stats.dead_lettered == 0
    assert live_digest(migrated) == clean_digest(migrated)


def test_queries_never_cross_orgs(bus: CommandBus, migrated: Settings) -> None:
    from hypothesis import given, settings as hsettings, strategies as st

    send_all(bus, workload(400, seed=5, orgs=3))
    run_projection(migrated, "memories", until_caught_up=True)
    store = open_memory_store(migrated)

    @hsettings(max_examples=60, deadline=None)
    @given(org=st.sampled_from(["org0", "org1", "org2", "nope"]),
           agent=st.one_of(st.none(), st.sampled_from(["agent0", "agent1"])),
           tags=st.lists(st.sampled_from(["food", "work", "urgent"]), max_size=2),
           match=st.sampled_from(["any", "all"]), text=st.one_of(st.none(), st.sampled_from(["tea", "billing"])),
           order=st.sampled_from(["recent", "importance"]))
    def check(org: str, agent: str | None, tags: list[str], match: str, text: str | None, order: str) -> None:
        q = MemoryQuery(org, agent, tuple(tags), match, text=text, order=order, limit=200)  # type: ignore[arg-type]
        rows = store.query(q).rows
        assert all(r["org_id"] == org for r in rows)
        assert all(agent is None or r["agent_id"] == agent for r in rows)

    check()
    store.close()
