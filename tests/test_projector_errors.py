"""Bad data is dead-lettered; a bug in a projection stops it, naming the event it failed on.

A KeyError (TypeError, AttributeError, ...) raised while applying is a fault of the code: it
would fail on every event alike, so dead-lettering would empty the read model one letter at a
time. The projector (and a rebuild) stops instead, before the event, with its position in the
message; what it applied before stays committed, so a fixed projector resumes right there.
Connecting and migrating errors are translated once, in `ledger.postgres`.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest

from commands import StoreMemory, open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.errors import ConfigurationError, ProjectionError, StoreUnavailable
from ledger.events import RecordedEvent
from ledger.postgres import NotMigrated, connect, translated
from projections import PROJECTIONS, MemoryQuery, Projector, open_memory_store, open_projection, run_projection
from projections.fold import MemoryChange
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection
from replay.rebuild import rebuild


class KeyErrorMemories(MemoriesProjection):
    """A bug: a lookup that fails for memories whose content mentions 'trigger'."""

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> tuple[MemoryChange, ...]:
        if any("trigger" in str(getattr(r.event.data, "content", "")) for r in events):
            raise KeyError("memory_kind")
        return super().write(cur, events)


def _sql(settings: Settings, query: str) -> list[tuple[str | int, ...]]:
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        return conn.execute(query).fetchall()


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    return settings


def _three_stores(settings: Settings) -> tuple[int, list[str]]:
    """Three memories of one agent (one partition, in order); the middle one trips the bug."""
    bus = open_bus(settings)
    receipts = [bus.send(StoreMemory(org_id="acme", agent_id="bot", memory_id=m, content=f"{m} content"))
                for m in ("before", "trigger", "after")]
    assert len({r.partition for r in receipts}) == 1
    return receipts[0].partition, [r.stream_id for r in receipts]


def test_a_bug_in_a_projection_stops_the_projector_naming_the_event_and_dead_letters_nothing(
        migrated: Settings) -> None:
    # Given three events, the middle one of which trips a KeyError in the projection's code
    partition, (before, trigger, _after) = _three_stores(migrated)
    log = open_log(migrated)
    event = log.read(partition)[1]
    projection = KeyErrorMemories(database_url(migrated), migrated.db_schema)
    # When the projector runs
    try:
        with pytest.raises(ProjectionError) as stopped:
            Projector(log, projection, None).run(until_caught_up=True)
    finally:
        projection.close()
    # Then it stopped with the event's position, id and type in the message, and why
    message = str(stopped.value)
    assert f"at partition {partition} id {trigger}" in message
    assert f"event {event.event.event_id} (MemoryStored)" in message
    assert "KeyError: 'memory_kind'" in message and "not bad data" in message
    assert isinstance(stopped.value.__cause__, KeyError)
    # and dead-lettered nothing: the checkpoint stays before the event, later ones wait
    assert _sql(migrated, "SELECT count(*) FROM dead_letters") == [(0,)]
    assert _sql(migrated, "SELECT stream_id FROM projection_checkpoints WHERE projection = 'memories'") == [(before,)]
    assert _sql(migrated, "SELECT memory_id FROM memories") == [("before",)]
    # And once the code is fixed, the projector resumes at that event
    assert run_projection(migrated, "memories", until_caught_up=True).dead_lettered == 0
    assert sorted(str(r[0]) for r in _sql(migrated, "SELECT memory_id FROM memories")) == ["after", "before", "trigger"]


def test_a_bug_stops_a_rebuild_naming_the_event(migrated: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _partition, (_before, trigger, _after) = _three_stores(migrated)
    run_projection(migrated, "memories", until_caught_up=True)
    monkeypatch.setitem(PROJECTIONS, "memories", KeyErrorMemories)  # the registry maps names to classes
    with pytest.raises(ProjectionError, match=rf"\(MemoryStored\) at partition \d+ id {trigger} failed: KeyError"):
        rebuild(migrated, "memories")
    assert sorted(str(r[0]) for r in _sql(migrated, "SELECT memory_id FROM memories")) == ["after", "before", "trigger"]


def test_a_namespace_never_migrated_says_to_migrate(settings: Settings) -> None:
    projection = open_projection("memories", settings)
    try:
        with pytest.raises(NotMigrated, match="run `memledger migrate`") as refused:
            projection.ensure_current()
    finally:
        projection.close()
    assert isinstance(refused.value, ConfigurationError) and refused.value.exit_code == 3
    store = open_memory_store(settings)
    try:
        with pytest.raises(NotMigrated, match="run `memledger migrate`"):
            store.query(MemoryQuery("acme"))
    finally:
        store.close()


def test_an_unreachable_or_lost_server_is_store_unavailable(settings: Settings) -> None:
    with pytest.raises(StoreUnavailable, match="PostgreSQL is unreachable"):
        connect("postgresql://postgres@127.0.0.1:1/test")
    conn = connect(settings, autocommit=True)
    with connect(settings, autocommit=True) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    with pytest.raises(StoreUnavailable), translated():
        conn.execute("SELECT 1")
    conn.close()
