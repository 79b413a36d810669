"""Rebuilds: shadow, catch-up and atomic swap; determinism; crash, cancel and resume; fail-fast;
verify; trim; status; dead letters."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import psycopg
import pytest

from commands import StoreMemory, UpdateMemory, open_bus
from ledger import Settings, open_log
from ledger.archive import HistoryGap
from ledger.codec import encode
from ledger.errors import OutdatedReadModel, PoisonEvent
from ledger.events import Event, MemoryStored, RecordedEvent
from projections import PROJECTIONS, MemoryQuery, open_memory_store, run_projection
from projections.postgres.memories import MemoriesProjection
from projections.base import ProjectionClass
from replay import Snapshot, open_target
from replay.deadletters import redrive
from replay.rebuild import Progress, plan_rebuild, rebuild
from replay.status import status
from replay.trim import trim
from replay.verify import verify
from projections.postgres.shadow_schema import shadow_schema

from test_replay_helpers import append_v1_memory, memledger, populate, project_all, sql
from workload import send_all, workload


def _live(settings: Settings, name: str = "memories") -> Snapshot:
    target = open_target(settings, name)
    try:
        return target.live_snapshot()
    finally:
        target.close()


def _shadow_checkpoints(settings: Settings, name: str = "memories") -> dict[int, str]:
    target = open_target(settings, name)
    try:
        return dict(target.shadow_checkpoints())
    finally:
        target.close()


def _indexes(settings: Settings) -> list[tuple[str, str]]:
    return sql(settings, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
               settings.db_schema)


@pytest.fixture
def ledger_1k(settings: Settings) -> Settings:
    populate(settings, 1000)
    return settings


# -- rebuild and swap ----------------------------------------------------------------------


def test_rebuild_swaps_in_an_identical_model_and_the_projector_continues(ledger_1k: Settings) -> None:
    settings = ledger_1k
    before, indexes = _live(settings), _indexes(settings)
    result = rebuild(settings, "memories", batch=300)
    assert result.swapped and result.applied == sum(open_log(settings).length(p) for p in range(4))
    assert _live(settings) == before
    assert _indexes(settings) == indexes  # the ones deferred during the bulk replay are back
    assert sql(settings, "SELECT count(*) FROM pg_namespace WHERE nspname = %s",
               shadow_schema(settings, "memories")) == [(0,)]
    # The live projector carries on from the swapped-in checkpoint
    send_all(open_bus(settings), workload(200, seed=9))
    run_projection(settings, "memories", until_caught_up=True)
    assert verify(settings, "memories").agree


def test_rebuilding_every_projection_twice_is_deterministic_and_equals_live(ledger_1k: Settings) -> None:
    for name in PROJECTIONS:
        live = _live(ledger_1k, name)
        rebuild(ledger_1k, name)
        first = _live(ledger_1k, name)
        rebuild(ledger_1k, name)
        assert first == _live(ledger_1k, name) == live, name


def test_queries_read_the_old_version_until_the_swap(ledger_1k: Settings) -> None:
    settings = ledger_1k
    [(org, memory_id, content)] = sql(settings, "SELECT org_id, memory_id, content FROM memories ORDER BY memory_id"
                                      " LIMIT 1")
    sql(settings, "UPDATE memories SET content = 'only in the old version' WHERE memory_id = %s", memory_id)
    store, seen = open_memory_store(settings), []

    def during(p: Progress) -> None:
        seen.append(store.get(org, memory_id)["content"])

    rebuild(settings, "memories", batch=100, report=during)
    assert len(seen) >= 5 and set(seen) == {"only in the old version"}
    assert store.get(org, memory_id)["content"] == content
    assert store.query(MemoryQuery(org, limit=5)).rows
    store.close()


def test_rebuild_while_the_live_projector_runs_and_commands_arrive(ledger_1k: Settings) -> None:
    settings, stop_projector, stop_sending = ledger_1k, threading.Event(), threading.Event()
    projector = threading.Thread(target=run_projection, args=(settings, "memories"),
                                 kwargs={"stop": stop_projector})
    archiver = threading.Thread(target=run_projection, args=(settings, "archive"), kwargs={"stop": stop_projector})

    def send() -> None:
        bus, seed = open_bus(settings), 100
        while not stop_sending.is_set():
            send_all(bus, workload(50, seed=seed))
            seed += 1
            time.sleep(0.01)

    sender = threading.Thread(target=send)
    for t in (projector, archiver, sender):
        t.start()
    try:
        time.sleep(0.3)
        result = rebuild(settings, "memories", batch=200)
        assert result.swapped
        time.sleep(0.3)  # the live projector keeps applying on the swapped-in model
    finally:
        stop_sending.set()
        sender.join()
        _wait_caught_up(settings)
        stop_projector.set()
        projector.join()
        archiver.join()
    assert verify(settings, "memories").agree


def _wait_caught_up(settings: Settings, name: str = "memories", timeout: float = 30) -> None:
    log, deadline = open_log(settings), time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = status(settings, [name])
        if all(r.lag == 0 for r in rows):
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not catch up: {rows}")


# -- cancel, crash, resume -----------------------------------------------------------------


def test_cancel_leaves_the_live_model_untouched_and_a_rerun_resumes(ledger_1k: Settings) -> None:
    settings = ledger_1k
    sql(settings, "UPDATE memories SET importance = 0.123")  # so the live model differs from a rebuild
    before, batches = _live(settings), []

    def interrupt(p: Progress) -> None:
        batches.append(p)
        if len(batches) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild(settings, "memories", batch=100, report=interrupt)
    assert _live(settings) == before
    assert sum(1 for _ in _shadow_checkpoints(settings)) >= 1
    assert {r.state for r in status(settings, ["memories"])} == {"rebuilding"}
    assert plan_rebuild(settings, "memories").resuming
    result = rebuild(settings, "memories", batch=100)
    assert result.swapped and 0 < result.applied < sum(open_log(settings).length(p) for p in range(4))
    assert verify(settings, "memories").agree
    assert {r.state for r in status(settings, ["memories"])} == {"live"}


def test_sigkill_mid_rebuild_then_rerun_resumes_and_verifies(settings: Settings) -> None:
    log = populate(settings, 6000)
    events = sum(log.length(p) for p in range(settings.partitions))
    before, indexes = _live(settings), _indexes(settings)
    child = memledger(settings, "replay", "rebuild", "memories", "--yes", "--batch", "50",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        if len(_shadow_checkpoints(settings)) >= 2:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the rebuild finished before it could be killed; give it more work"
    child.send_signal(signal.SIGKILL)
    child.wait()
    resumed_from = _shadow_checkpoints(settings)
    assert resumed_from and _live(settings) == before
    result = rebuild(settings, "memories")
    assert result.swapped and 0 < result.applied < events
    assert _live(settings) == before and _indexes(settings) == indexes
    assert verify(settings, "memories").agree


def test_partition_and_bound_runs_only_advance_the_shadow(ledger_1k: Settings) -> None:
    settings, log = ledger_1k, open_log(ledger_1k)
    before = _live(settings)
    middle = list(log.iter_partition(0))[100].position.stream_id
    first = rebuild(settings, "memories", partitions=[0], bound=middle)
    assert not first.swapped and first.checkpoints[0] == middle and set(first.checkpoints) == {0}
    with pytest.raises(Exception, match="past"):
        rebuild(settings, "memories", bound="1-0")
    # Partitions in parallel processes' style: each run takes only its own partitions' locks
    runs = [threading.Thread(target=rebuild, args=(settings, "memories", [p])) for p in (1, 2, 3)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert set(_shadow_checkpoints(settings)) == {0, 1, 2, 3}
    assert _live(settings) == before
    final = rebuild(settings, "memories")
    assert final.swapped and _live(settings) == before


# -- fail fast ----------------------------------------------------------------------------


def test_rebuild_fails_fast_on_a_poison_event_naming_it(ledger_1k: Settings) -> None:
    settings, log = ledger_1k, open_log(ledger_1k)
    receipt = open_bus(settings).send(StoreMemory(org_id="org0", agent_id="agent0", memory_id="ok", content="fine"))
    # A body PostgreSQL cannot store (a NUL in text: commands refuse it, an old writer did not)
    bad = log.client.xadd(log.keys.stream(receipt.partition), {"v": 1, "e": _body_with_nul()}).decode()
    stats = run_projection(settings, "memories", until_caught_up=True)
    assert stats.dead_lettered == 1  # the live projector dead-letters and goes on
    before = _live(settings)
    with pytest.raises(PoisonEvent, match=rf"event [0-9a-f-]+ \(MemoryStored\) at partition {receipt.partition} "
                                          rf"id {bad} failed: UntranslatableCharacter: .*\\u0000 cannot"):
        rebuild(settings, "memories")
    assert _live(settings) == before


def _body_with_nul() -> bytes:
    event = Event(event_id=uuid.uuid4(), type="MemoryStored", schema_version=2, org_id="org0", agent_id="agent0",
                  subject_id="nul", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                  data=MemoryStored(content="a\x00b"))
    return encode(event)


# -- verify -------------------------------------------------------------------------------


def test_verify_names_the_differences(ledger_1k: Settings) -> None:
    settings = ledger_1k
    assert verify(settings, "memories").agree
    [(memory_id,)] = sql(settings, "SELECT memory_id FROM memories ORDER BY memory_id LIMIT 1")
    sql(settings, "DELETE FROM memories WHERE memory_id = %s", memory_id)
    result = verify(settings, "memories")
    assert not result.agree
    assert result.differences == (f"memories: 0 rows only in live, 1 rows only in the rebuild "
                                  f"(e.g. {_key(settings, memory_id)})",)
    assert result.live["tag_stats"] == result.rebuilt["tag_stats"]
    # verify leaves nothing behind
    assert sql(settings, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s",
               settings.db_schema + "\\_verify%") == [(0,)]


def _key(settings: Settings, memory_id: str) -> str:
    [(org, agent)] = sql(settings, "SELECT org_id, agent_id FROM event_archive WHERE subject_id = %s LIMIT 1",
                         memory_id)
    return f"{org}/{agent}/{memory_id}"


# -- trim ---------------------------------------------------------------------------------


def test_trim_then_rebuild_is_identical_to_before_the_trim(ledger_1k: Settings) -> None:
    settings, log = ledger_1k, open_log(ledger_1k)
    sid = append_v1_memory(log, "org1", "agent1", "legacy", "from the old days", 9, partition=2)
    send_all(open_bus(settings), workload(200, seed=4))  # later events, so the trim passes the v1 one
    project_all(settings)
    before = _live(settings)
    lengths = [log.length(p) for p in range(4)]
    points = trim(settings, older_than_days=0)
    assert all(p.min_id for p in points) and [log.length(p) for p in range(4)] < lengths
    assert not log.client.xrange(log.keys.stream(2), sid, sid)  # the v1 event now lives in the archive only
    rebuild(settings, "memories")
    assert _live(settings) == before
    assert sql(settings, "SELECT content, importance FROM memories WHERE memory_id = 'legacy'") == [
        ("from the old days", pytest.approx(0.9))]
    with pytest.raises(HistoryGap, match="can only be rebuilt from what the stream still holds"):
        rebuild(settings, "archive")


def test_trim_never_passes_a_projection_that_is_behind(ledger_1k: Settings) -> None:
    settings = ledger_1k
    checkpoints = _live(settings).checkpoints
    send_all(open_bus(settings), workload(300, seed=5))
    project_all(settings, ("archive",))  # memories stays behind
    points = {p.partition: p for p in trim(settings, older_than_days=0)}
    for p, sid in checkpoints.items():
        assert points[p].min_id == sid and points[p].held_by == "projection memories"
    assert trim(settings, older_than_days=3650)[0].held_by == "age"
    # A ledger consumer that is not a registered read model (the session enqueuer) counts too
    sql(settings, "INSERT INTO projection_checkpoints (projection, partition, stream_id) VALUES ('enqueuer', 0, '5-0')")
    points = {p.partition: p for p in trim(settings, older_than_days=0)}
    assert (points[0].min_id, points[0].held_by) == ("5-0", "consumer enqueuer")
    assert (points[1].min_id, points[1].held_by) == (None, "consumer enqueuer has applied nothing of this partition")


# -- status and dead letters ------------------------------------------------------------


class BuggyMemories(MemoriesProjection):
    """Fails on memories whose content mentions 'boom' (a bug, fixed by the real class)."""

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:  # type: ignore[type-arg]
        if any("boom" in str(getattr(r.event.data, "content", "")) for r in events):
            raise psycopg.errors.CheckViolation("boom is not supported")
        super().write(cur, events)


class MemoriesV2(MemoriesProjection):
    version = 2


@pytest.fixture
def registry() -> Iterator[dict[str, ProjectionClass]]:
    saved = dict(PROJECTIONS)
    yield PROJECTIONS
    PROJECTIONS.clear()
    PROJECTIONS.update(saved)


def _use(registry: dict[str, ProjectionClass], cls: type[MemoriesProjection]) -> None:
    registry["memories"] = cls  # the registry maps names to classes


def test_status_shows_lag_version_state_and_dead_letters(ledger_1k: Settings, registry: dict[str, ProjectionClass]) -> None:
    settings = ledger_1k
    rows = status(settings)
    assert {(r.projection, r.state, r.version, r.lag, r.dead_letters) for r in rows} == {
        (name, "live", 1, 0, 0) for name in PROJECTIONS}
    assert all(r.checkpoint == r.head for r in rows)
    send_all(open_bus(settings), workload(40, seed=3))
    assert sum(r.lag for r in status(settings, ["memories"])) == sum(
        1 for p in range(4) for _ in open_log(settings).read(p, _live_checkpoint(settings, p)))
    _use(registry, MemoriesV2)
    assert {(r.state, r.version, r.code_version) for r in status(settings, ["memories"])} == {("outdated", 1, 2)}
    with pytest.raises(OutdatedReadModel, match="memledger replay rebuild memories"):
        run_projection(settings, "memories", until_caught_up=True)
    rebuild(settings, "memories")
    assert {(r.state, r.version, r.lag) for r in status(settings, ["memories"])} == {("live", 2, 0)}


def _live_checkpoint(settings: Settings, partition: int) -> str:
    return sql(settings, "SELECT stream_id FROM projection_checkpoints WHERE projection = 'memories' AND "
               "partition = %s", partition)[0][0]


def test_dead_letters_are_redriven_in_order_or_refused(ledger_1k: Settings, registry: dict[str, ProjectionClass]) -> None:
    settings, bus = ledger_1k, open_bus(ledger_1k)
    # Given a projector with a bug that dead-letters two stores; one memory is updated afterwards
    _use(registry, BuggyMemories)
    bus.send(StoreMemory(org_id="org0", agent_id="agent0", memory_id="lonely", content="boom one"))
    bus.send(StoreMemory(org_id="org1", agent_id="agent1", memory_id="updated", content="boom two"))
    bus.send(UpdateMemory(org_id="org1", agent_id="agent1", memory_id="updated", importance=0.99))
    project_all(settings)
    letters = {r.projection: r.dead_letters for r in status(settings) if r.dead_letters}
    assert letters == {"memories": 2}
    # When the bug is fixed and the letters re-driven
    _use(registry, MemoriesProjection)
    subjects = dict(sql(settings, "SELECT event_id::text, subject_id FROM event_archive WHERE type = 'MemoryStored'"
                        " AND subject_id IN ('lonely', 'updated')"))
    by_subject = {subjects[o.letter.event_id]: o for o in redrive(settings)}
    # Then the one nothing came after is applied, the other is refused as out of order
    assert by_subject["lonely"].outcome == "redriven"
    assert by_subject["updated"].outcome == "refused" and "out of order" in by_subject["updated"].detail
    assert sql(settings, "SELECT content FROM memories WHERE memory_id = 'lonely'") == [("boom one",)]
    assert redrive(settings) and sum(r.dead_letters for r in status(settings)) == 1
    # and a rebuild applies everything in order and resolves the rest
    rebuild(settings, "memories")
    assert sum(r.dead_letters for r in status(settings)) == 0
    assert sql(settings, "SELECT importance FROM memories WHERE memory_id = 'updated'") == [(pytest.approx(0.99),)]
    assert verify(settings, "memories").agree
