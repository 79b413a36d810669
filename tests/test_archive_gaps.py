"""Gaps in the archive: an event the archive does not hold is read from the stream, or the read
stops with HistoryGap; it is never jumped over. The archive projector never dead-letters."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from commands import ForgetMemory, StoreMemory, open_bus
from ledger import Settings, open_log
from ledger.archive import HistoryGap, read_from
from ledger.codec import decode_body, encode
from ledger.errors import PoisonEvent
from ledger.events import MemoryForgotten, RecordedEvent, stream_id_key
from ledger.log import RedisEventLog
from projections import PROJECTIONS, open_projection, run_projection
from projections.postgres import migrate
from replay import Snapshot, open_target
from replay.rebuild import rebuild
from replay.trim import plan_trim, trim

from test_replay_helpers import project_all, sql

ORG, AGENT = "org-gaps", "agent-gaps"
READ_MODELS = tuple(name for name in PROJECTIONS if name != "archive")


def _ids(events: object) -> list[str]:
    return [r.position.stream_id for r in events]  # type: ignore[attr-defined]


def _live(settings: Settings) -> Snapshot:
    target = open_target(settings, "memories")
    try:
        return target.live_snapshot()
    finally:
        target.close()


def _forget_with_nul(settings: Settings) -> str:
    """Append ForgetMemory m1 with a NUL in its reason (PostgreSQL's jsonb refuses it), through the
    log's own append: the command side now refuses NUL, an older writer did not."""
    bus = open_bus(settings)
    append = bus.prepare(ForgetMemory(org_id=ORG, agent_id=AGENT, memory_id="m1", reason="outdated"))
    event = decode_body(append.bodies[0], 0)
    body = encode(event.model_copy(update={"data": MemoryForgotten(reason="out\x00dated")}))
    [receipt] = bus.log.append_many([dataclasses.replace(append, bodies=(body,))])
    assert not isinstance(receipt, Exception)
    return receipt.stream_id


def _history(settings: Settings) -> tuple[RedisEventLog, int, str]:
    """StoreMemory m1, ForgetMemory m1 (un-archivable), StoreMemory m2 in one partition, plus
    traffic of other agents. Returns the log, the partition and the forget's stream id."""
    migrate.upgrade(settings)
    bus = open_bus(settings)
    others = [StoreMemory(org_id="org-x", agent_id=f"agent{i}", content=f"other {i}") for i in range(12)]
    [m1, *_] = bus.send_many([StoreMemory(org_id=ORG, agent_id=AGENT, memory_id="m1", content="secret"), *others])
    forget = _forget_with_nul(settings)
    bus.send_many([StoreMemory(org_id=ORG, agent_id=AGENT, memory_id="m2", content="kept"), *others[:4]])
    assert not isinstance(m1, Exception)
    return bus.log, m1.partition, forget


def _archive_as_before_the_fix(settings: Settings) -> list[str]:
    """Archive the ledger as the projector runtime did before this fix: an event PostgreSQL
    cannot store goes to `dead_letters` and the checkpoint moves past it (the state an existing
    deployment is in). Returns the dead-lettered stream ids."""
    log, archive, letters = open_log(settings), open_projection("archive", settings), []
    try:
        archive.ensure_current()
        for p in range(log.partitions):
            after = "0-0"
            for r in log.iter_partition(p):
                try:
                    archive.apply(p, [r], after)
                except psycopg.DataError as e:
                    _dead_letter_by_hand(settings, r, after, str(e))
                    letters.append(r.position.stream_id)
                after = r.position.stream_id
    finally:
        archive.close()
    return letters


def _dead_letter_by_hand(settings: Settings, r: RecordedEvent, after: str, error: str) -> None:
    p, sid = r.position.partition, r.position.stream_id
    sql(settings, "INSERT INTO dead_letters (projection, partition, stream_id, event_id, event_type, error, attempts)"
        " VALUES ('archive', %s, %s, %s, %s, %s, 3)", p, sid, str(r.event.event_id), r.event.type, error)
    sql(settings, "INSERT INTO projection_checkpoints (projection, partition, stream_id) VALUES ('archive', %s, %s)"
        " ON CONFLICT (projection, partition) DO UPDATE SET stream_id = EXCLUDED.stream_id", p, sid)


def _force_trim(log: RedisEventLog, partition: int, min_id: str) -> None:
    """Trim below `min_id` whatever the archive holds (by hand, or a trim blind to the dead letter)."""
    log.trim(partition, min_id)


def _successor(sid: str) -> str:
    ms, seq = stream_id_key(sid)
    return f"{ms}-{seq + 1}"


# -- (a) an existing deployment's dead letter ----------------------------------------------


def test_an_archive_dead_letter_is_read_from_the_stream_and_rebuilds_keep_the_memory_forgotten(
        settings: Settings) -> None:
    # Given the forget of m1 dead-lettered by the archive, which went on with m2
    log, p, forget = _history(settings)
    assert _archive_as_before_the_fix(settings) == [forget]
    assert sql(settings, "SELECT count(*) FROM event_archive WHERE partition = %s", p)[0][0] == log.length(p) - 1
    run_projection(settings, "memories", until_caught_up=True)
    live = _live(settings)
    assert sql(settings, "SELECT memory_id FROM memories WHERE org_id = %s ORDER BY 1", ORG) == [("m2",)]
    # When history is read, whole or from the middle
    history = list(read_from(settings, log, p))
    stream = list(log.iter_partition(p))
    # Then the archive's gap is filled from the stream, in its place
    assert _ids(history) == _ids(stream)
    assert [r.event for r in history] == [r.event for r in stream]
    before = stream[_ids(stream).index(forget) - 1].position.stream_id
    assert _ids(read_from(settings, log, p, after=before, page=2))[0] == forget
    assert forget not in _ids(read_from(settings, log, p, after=forget))
    # and a rebuild of memories equals the live model: m1 stays forgotten
    rebuild(settings, "memories")
    assert _live(settings) == live
    assert sql(settings, "SELECT memory_id FROM memories WHERE org_id = %s ORDER BY 1", ORG) == [("m2",)]


# -- (b) trimming --------------------------------------------------------------------------


def test_trim_keeps_a_dead_lettered_event_and_a_trimmed_one_stops_the_read(settings: Settings) -> None:
    log, p, forget = _history(settings)
    _archive_as_before_the_fix(settings)
    project_all(settings, READ_MODELS)
    history = _ids(log.iter_partition(p))
    # The trim stops below the archive's dead letter: the stream keeps the forget
    [point] = [x for x in trim(settings, older_than_days=0) if x.partition == p]
    assert point.min_id == forget and "dead letter" in point.held_by
    assert _ids(log.iter_partition(p))[0] == forget
    assert _ids(read_from(settings, log, p)) == history
    # A trim that went past it (an older version's) lost it for good: reading history says so
    _force_trim(log, p, _successor(forget))
    with pytest.raises(HistoryGap, match=rf"partition {p}: .*{forget}.*dead-lettered.*trimmed"):
        list(read_from(settings, log, p))
    with pytest.raises(HistoryGap, match=rf"partition {p}"):
        rebuild(settings, "memories")
    # while a read starting past it still works
    assert _ids(read_from(settings, log, p, after=forget)) == _ids(log.iter_partition(p))


# -- (c) the archive projector stops instead of dead-lettering -----------------------------


def test_the_archive_projector_stops_at_an_event_it_cannot_store(settings: Settings) -> None:
    log, p, forget = _history(settings)
    [event_id] = [str(r.event.event_id) for r in log.iter_partition(p) if r.position.stream_id == forget]
    # When the archive projector meets the forget it cannot store
    with pytest.raises(PoisonEvent, match=rf"archive: event {event_id} \(MemoryForgotten\) at partition {p} "
                                          rf"id {forget} failed: UntranslatableCharacter: .* not skipped"):
        run_projection(settings, "archive", until_caught_up=True)
    # Then it dead-lettered nothing, and its checkpoint stays just before the event
    assert sql(settings, "SELECT count(*) FROM dead_letters") == [(0,)]
    stream = _ids(log.iter_partition(p))
    [(checkpoint,)] = sql(settings, "SELECT stream_id FROM projection_checkpoints WHERE projection = 'archive'"
                          " AND partition = %s", p)
    assert checkpoint == stream[stream.index(forget) - 1]
    # and a second run stops there again
    with pytest.raises(PoisonEvent, match=forget):
        run_projection(settings, "archive", until_caught_up=True)
    # The stream keeps the event (no trim passes the archive's checkpoint), history is whole,
    # and a rebuild of memories keeps m1 forgotten
    project_all(settings, READ_MODELS)
    [point] = [x for x in plan_trim(settings, older_than_days=0) if x.partition == p]
    assert (point.min_id, point.held_by) == (checkpoint, "projection archive")
    assert _ids(read_from(settings, log, p)) == stream
    live = _live(settings)
    rebuild(settings, "memories")
    assert _live(settings) == live
    assert sql(settings, "SELECT memory_id FROM memories WHERE org_id = %s ORDER BY 1", ORG) == [("m2",)]


# -- other ways the archive can lack an event ----------------------------------------------


def _archived_history(settings: Settings) -> tuple[RedisEventLog, int, list[str]]:
    migrate.upgrade(settings)
    bus = open_bus(settings)
    outcomes = bus.send_many([StoreMemory(org_id=ORG, agent_id=AGENT, memory_id=f"m{i}", content=f"memory {i}")
                              for i in range(30)])
    project_all(settings)
    p = outcomes[0].partition  # type: ignore[union-attr]
    return bus.log, p, _ids(bus.log.iter_partition(p))


def _delete_archived(settings: Settings, partition: int, sid: str) -> None:
    ms, seq = stream_id_key(sid)
    sql(settings, "DELETE FROM event_archive WHERE partition = %s AND stream_ms = %s AND stream_seq = %s",
        partition, ms, seq)


def test_a_row_deleted_from_the_archive_is_read_from_the_stream_or_stops_the_read(settings: Settings) -> None:
    # Given an archive that lost a row in its middle (deleted by hand), with no dead letter for it
    log, p, stream = _archived_history(settings)
    lost = stream[10]
    _delete_archived(settings, p, lost)
    # Then history still has it, read from the stream, which holds it
    assert _ids(read_from(settings, log, p)) == stream
    # and the trim refuses to drop what the archive lacks
    [point] = [x for x in trim(settings, older_than_days=0) if x.partition == p]
    assert point.min_id is None and "lacks 1 event" in point.held_by
    assert log.length(p) == len(stream)
    # Once the stream no longer holds it either, reading history stops instead of skipping it
    _force_trim(log, p, stream[20])
    with pytest.raises(HistoryGap, match=rf"partition {p}: the archive lacks 1 event .* {stream[19]}"):
        list(read_from(settings, log, p))


def test_trim_never_passes_the_archives_newest_event(settings: Settings) -> None:
    # Given an archive checkpoint ahead of its rows (the newest rows were lost, say a restore)
    log, p, stream = _archived_history(settings)
    for sid in stream[-5:]:
        _delete_archived(settings, p, sid)
    # Then the trim keeps what the archive does not hold
    [point] = [x for x in trim(settings, older_than_days=0) if x.partition == p]
    assert point.min_id == stream[-6]
    assert _ids(log.iter_partition(p)) == stream[-6:]
    assert _ids(read_from(settings, log, p)) == stream
