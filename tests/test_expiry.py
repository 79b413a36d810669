"""Expiry and retention: events through the command bus, the read model follows, a replay agrees."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from commands import CommandBus, StoreMemory, UpdateMemory, open_bus
from ledger import Settings, open_log
from ledger import events as ev
from ledger.connections import database_url
from ledger.events import RecordedEvent
from ledger.log import Receipt
from projections import Projector, run_projection
from projections.postgres import migrate
from projections.postgres.base import connect
from projections.postgres.digest import digests
from projections.postgres.memories import MemoriesProjection
from workers.expiry import run_maintenance
from workers.sample import sessions

from test_workers_e2e import Watcher, fast, workers  # noqa: F401 - `workers` is a fixture

NOW = datetime.now(timezone.utc)


def _events(settings: Settings, event_type: str) -> list[RecordedEvent]:
    log = open_log(settings)
    return [r for p in range(log.partitions) for r in log.iter_partition(p) if r.event.type == event_type]


def _send(bus: CommandBus, commands: list[Any]) -> None:
    outcomes = bus.send_many(commands)
    assert all(isinstance(o, Receipt) for o in outcomes), outcomes


def _memory(memory_id: str, expires_at: datetime | None, agent: str = "a1") -> StoreMemory:
    return StoreMemory(org_id="acme", agent_id=agent, memory_id=memory_id, content=f"about {memory_id}",
                       tags=("t",), expires_at=expires_at)


def _replayed_digests(settings: Settings) -> dict[str, tuple[int, str]]:
    """A fresh memories projection over the same log, in a schema of its own."""
    schema = settings.db_schema + "_replay"
    migrate.upgrade(settings, schema=schema)
    projection = MemoriesProjection(database_url(settings), schema)
    try:
        Projector(open_log(settings), projection, None).run(until_caught_up=True)
        return digests(projection.conn, MemoriesProjection.tables)
    finally:
        projection.close()


def test_expiry_and_retention_are_events_the_read_model_follows_and_a_replay_agrees(settings: Settings) -> None:
    migrate.upgrade(settings)
    bus = open_bus(settings, system=True)  # the maintenance job's bus
    # Given sessions ingested 40 days ago and today, and memories past, before and without their expiry
    old_bus = CommandBus(bus.log, clock=lambda: NOW - timedelta(days=40))
    _send(old_bus, list(sessions(3, prefix="old")))
    _send(bus, list(sessions(2, prefix="new")))
    past, future = NOW - timedelta(minutes=1), NOW + timedelta(days=1)
    _send(bus, [_memory("gone-1", past), _memory("gone-2", past, "a2"), _memory("gone-3", past),
                _memory("moved", past), _memory("later", future), _memory("forever", None)])
    run_projection(settings, "memories", until_caught_up=True)
    # ... and one expiry moved after the read model last saw it
    bus.send(UpdateMemory(org_id="acme", agent_id="a1", memory_id="moved", expires_at=future))
    with connect(database_url(settings), settings.db_schema, autocommit=True) as conn:
        # When the maintenance job runs (twice: the second round finds its own work not yet projected)
        report = run_maintenance(bus, conn, retention_days=30, now=NOW)
        again = run_maintenance(bus, conn, retention_days=30, now=NOW)
        # Then it expired the three due memories, skipped the moved one, purged the three old transcripts
        assert (report.expired, report.purged, report.skipped, report.duplicates) == (3, 3, 1, 0)
        assert (again.expired, again.purged, again.duplicates) == (0, 0, 6)
        expired = _events(settings, "MemoryExpired")
        assert sorted(r.event.subject_id for r in expired) == ["gone-1", "gone-2", "gone-3"]
        assert all(isinstance(r.event.data, ev.MemoryExpired) and r.event.data.expires_at == past for r in expired)
        purged = _events(settings, "SessionTranscriptPurged")
        assert sorted(r.event.subject_id for r in purged) == ["old-0-0", "old-0-1", "old-0-2"]
        # ... and the read model follows the events
        run_projection(settings, "memories", until_caught_up=True)
        live = {r[0] for r in conn.execute("SELECT memory_id FROM memories").fetchall()}
        assert live == {"moved", "later", "forever"}
        transcripts: dict[str, bool] = dict(conn.execute("SELECT session_id, transcript IS NOT NULL FROM sessions").fetchall())
        assert transcripts == {"old-0-0": False, "old-0-1": False, "old-0-2": False, "new-0-0": True,
                               "new-0-1": True}
        expired_stats = conn.execute("SELECT sum(expired) FROM agent_stats").fetchone()
        assert expired_stats is not None and expired_stats[0] == 3
        # ... a later round with a later clock expires the moved memory too
        later = run_maintenance(bus, conn, retention_days=30, now=future + timedelta(seconds=1))
        assert later.expired == 2  # "moved" and "later"
        run_projection(settings, "memories", until_caught_up=True)
        live_digests = digests(conn, MemoriesProjection.tables)
    # And a fresh projection over the same log builds the same tables (no clock in the fold)
    assert _replayed_digests(settings) == live_digests


def test_an_expired_memory_takes_no_further_changes(settings: Settings) -> None:
    migrate.upgrade(settings)
    bus = open_bus(settings, system=True)
    bus.send(_memory("m", NOW - timedelta(seconds=1)))
    run_projection(settings, "memories", until_caught_up=True)
    with connect(database_url(settings), settings.db_schema, autocommit=True) as conn:
        assert run_maintenance(bus, conn, retention_days=30, now=NOW).expired == 1
    outcome = bus.send_many([UpdateMemory(org_id="acme", agent_id="a1", memory_id="m", content="x")])[0]
    assert not isinstance(outcome, Receipt) and outcome.code == "forgotten"


def test_the_worker_runs_expiry_and_retention_periodically(settings: Settings, workers: Any, tmp_path: Path) -> None:
    # Given a due memory and an old session in the read model
    migrate.upgrade(settings)
    bus = open_bus(settings)
    bus.send(_memory("due", NOW - timedelta(seconds=1)))
    _send(CommandBus(bus.log, clock=lambda: NOW - timedelta(days=31)), list(sessions(1, prefix="old")))
    run_projection(settings, "memories", until_caught_up=True)
    watcher = Watcher(open_log(settings))
    # When workers run with a short maintenance interval
    worker = workers(fast(settings, maintenance_interval_s=1.0))
    watcher.wait("MemoryExpired", 1, log_file=tmp_path / "worker.log")
    watcher.wait("SessionTranscriptPurged", 1, log_file=tmp_path / "worker.log")
    time.sleep(2.5)  # two more rounds: idempotent, nothing new
    watcher.poll()
    worker.stop()
    # Then each due item produced exactly one event
    counts = Counter(r.event.type for r in watcher.events)
    assert (counts["MemoryExpired"], counts["SessionTranscriptPurged"]) == (1, 1)
