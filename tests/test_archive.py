"""Reading history: the archive, then the stream, seamlessly; upcast; gaps detected, never skipped."""

from __future__ import annotations

import psycopg
import pytest

from commands import StoreMemory, open_bus
from ledger import Settings
from ledger.archive import HistoryGap, archive_count, event_at, read_from, trimmed_through
from ledger.connections import database_url
from ledger.events import stream_id_key
from replay.trim import trim

from test_replay_helpers import append_v1_memory, populate, project_all, sql


def _ids(events: object) -> list[str]:
    return [r.position.stream_id for r in events]  # type: ignore[attr-defined]


def test_read_from_continues_in_the_stream_after_the_last_archived_event(settings: Settings) -> None:
    # Given an archive holding the first 600 commands, and 300 more only in the stream
    log = populate(settings, 600)
    archived = {p: sql(settings, "SELECT count(*) FROM event_archive WHERE partition = %s", p)[0][0]
                for p in range(settings.partitions)}
    populate(settings, 300, seed=2, project=False)
    for p in range(settings.partitions):
        stream = list(log.iter_partition(p))
        # When history is read from the start
        history = list(read_from(settings, log, p))
        # Then it is the whole stream, in order, each event once, archive first
        assert _ids(history) == _ids(stream)
        assert [r.event.event_id for r in history] == [r.event.event_id for r in stream]
        assert 0 < archived[p] < len(history)
        # and a read from the middle of the archive, bounded, is the matching slice
        mid, end = stream[archived[p] // 2].position.stream_id, stream[-10].position.stream_id
        assert _ids(read_from(settings, log, p, after=mid, until=end, page=7)) == _ids(
            [r for r in stream if stream_id_key(mid) < r.position.key <= stream_id_key(end)])


def test_archived_old_schema_versions_are_upcast_on_read(settings: Settings) -> None:
    log = populate(settings, 50)
    sid = append_v1_memory(log, "org0", "agent0", "legacy-1", "met Ana in 2019", 7, partition=1)
    project_all(settings, ("archive",))
    # The archive keeps the body as written (v1) ...
    assert sql(settings, "SELECT schema_version, body->'data'->>'text' FROM event_archive WHERE subject_id = "
               "'legacy-1'") == [(1, "met Ana in 2019")]
    # ... and every read path upcasts it to the current payload
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        r = event_at(conn, log, 1, sid)
        assert archive_count(conn, 1) == len(list(log.iter_partition(1)))
    assert r is not None and r.stored_version == 1
    assert r.event.schema_version == 2
    assert (r.event.data.content, r.event.data.importance) == ("met Ana in 2019", 0.7)  # type: ignore[attr-defined]
    [again] = [x for x in read_from(settings, log, 1) if x.position.stream_id == sid]
    assert again.event == r.event


def test_after_a_trim_the_archive_supplies_history_and_a_stream_only_read_refuses(settings: Settings) -> None:
    log = populate(settings, 400)
    before = {p: _ids(read_from(settings, log, p)) for p in range(settings.partitions)}
    # When the streams are trimmed to what every projection has applied
    points = trim(settings, older_than_days=0)
    assert sum(p.removed for p in points) > 0
    for p in range(settings.partitions):
        assert log.length(p) < len(before[p])
        # Then history read through the archive is unchanged
        assert _ids(read_from(settings, log, p)) == before[p]
        # and a stream-only read from the start refuses instead of skipping
        with pytest.raises(HistoryGap, match=f"partition {p}: the stream was trimmed through"):
            list(read_from(None, log, p))
        # while one from the trim point on still works
        mark = trimmed_through(log, p)
        assert mark is not None
        assert _ids(read_from(None, log, p, after=mark)) == [s for s in before[p] if stream_id_key(s) >
                                                             stream_id_key(mark)]


def test_a_gap_the_archive_cannot_bridge_is_an_error(settings: Settings) -> None:
    log = populate(settings, 200)
    trim(settings, older_than_days=0)
    # An archive that lost rows (restored from an old backup, say)
    sql(settings, "DELETE FROM event_archive WHERE (stream_ms, stream_seq) > (SELECT stream_ms, stream_seq FROM "
        "event_archive WHERE partition = 0 ORDER BY stream_ms, stream_seq LIMIT 1) AND partition = 0")
    with pytest.raises(HistoryGap, match="the archive ends at that point"):
        list(read_from(settings, log, 0))


def test_event_at_falls_back_to_the_stream(settings: Settings) -> None:
    log = populate(settings, 10, project=False)
    receipt = open_bus(settings).send(StoreMemory(org_id="o", agent_id="a", memory_id="x", content="only in stream"))
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        r = event_at(conn, log, receipt.partition, receipt.stream_id)
        assert r is not None and r.event.subject_id == "x"
        assert event_at(conn, log, receipt.partition, "1-1") is None
