"""The `EventLog` contract: what every implementation of the ledger's role must do.

An implementation's test module subclasses `EventLogContract` and provides one fixture,
`log`, yielding a fresh, empty ledger (tests/test_eventlog_redis.py does it for one Redis;
the Redis Cluster issue does it for a cluster). The conftest's `settings` fixture names the
namespace and the servers; a subclass whose ledger needs other settings overrides
`settings` as well. The trim test fills the archive through `archive_everything`, which a
subclass may override if its archive is filled another way.

Events are built here from ledger.events, not through the command bus: the contract is the
log's, and the bus has tests of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import pytest

from ledger import events as ev
from ledger.archive import HistoryGap
from ledger.codec import decode_entry, encode
from ledger.errors import CommandError, SubjectExists, SubjectForgotten, UnknownSubject, VersionConflict
from ledger.eventlog import Append, EventLog, Kind, Mode, Outcome, Receipt, Subject, SubjectState, Trimmed
from ledger.events import RecordedEvent, stream_id_key
from ledger.ids import uuid7
from ledger.settings import Settings

ORG = "org-contract"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
_PAYLOADS: dict[str, Any] = {
    "create": lambda n: ev.MemoryStored(content=f"content {n}"),
    "change": lambda n: ev.MemoryUpdated(content=f"changed {n}"),
    "end": lambda n: ev.MemoryForgotten(reason=f"reason {n}"),
    "touch": lambda n: ev.MemoryRecalled(query=f"query {n}"),
}


def event(agent: str, subject: str, data: ev.Payload, org: str = ORG) -> ev.Event:
    return ev.Event(event_id=uuid7(), type=data.type_name, schema_version=data.schema_version, org_id=org,
                    agent_id=agent, subject_id=subject, occurred_at=NOW, data=data)


def append(agent: str, subject: str, mode: Mode = "create", *, kind: Kind = "m", expected: int | None = None,
           key: str | None = None, events: int = 1, org: str = ORG,
           payloads: Sequence[ev.Payload] | None = None) -> Append:
    """One command's Append: `events` events of the type `mode` implies (or `payloads`)."""
    built = [event(agent, subject, p, org) for p in payloads or [_PAYLOADS[mode](n) for n in range(events)]]
    return Append(org, agent, kind, subject, mode, tuple(str(e.event_id) for e in built),
                  tuple(encode(e) for e in built), expected_version=expected, idempotency_key=key)


def ok(outcome: Outcome) -> Receipt:
    assert isinstance(outcome, Receipt), f"expected a receipt, got {outcome!r}"
    return outcome


def ids(records: Sequence[RecordedEvent] | Iterator[RecordedEvent]) -> list[str]:
    return [r.position.stream_id for r in records]


def total(log: EventLog) -> int:
    return sum(log.length(p) for p in range(log.partitions))


def agents_apart(log: EventLog, count: int) -> list[str]:
    """`count` agent ids of ORG, in as many different partitions as the log has (up to `count`)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < min(count, log.partitions):
        found.setdefault(log.partition_of(ORG, f"agent{n}"), f"agent{n}")
        n += 1
    return [*found.values(), *(f"extra{i}" for i in range(count - len(found)))]


class EventLogContract:
    """Subclass with a `log` fixture; every test starts from an empty ledger."""

    @pytest.fixture
    def log(self, settings: Settings) -> Iterator[EventLog]:
        raise NotImplementedError("an implementation's test class provides the `log` fixture")

    def archive_everything(self, settings: Settings) -> None:
        """Copy every event of the ledger into the archive (the log's cold tier)."""
        from projections import run_projection
        from projections.postgres import migrate

        migrate.upgrade(settings)
        run_projection(settings, "archive", until_caught_up=True)

    # -- appending -------------------------------------------------------------------------

    def test_an_append_returns_its_position_version_and_event_ids(self, log: EventLog) -> None:
        item = append("a1", "m1", events=3)
        receipt = ok(log.append(item))
        assert receipt.partition == log.partition_of(ORG, "a1")
        assert (receipt.subject_version, receipt.event_ids, receipt.duplicate) == (3, item.event_ids, False)
        assert receipt.stream_id == log.head(receipt.partition)
        records = log.read(receipt.partition)
        # A command's events are contiguous, in order, each bumping the subject's version.
        assert [str(r.event.event_id) for r in records] == list(item.event_ids)
        assert [r.event.subject_version for r in records] == [1, 2, 3]
        assert records[-1].position == receipt.position

    def test_a_retried_idempotency_key_returns_the_original_receipt_and_appends_nothing(self, log: EventLog) -> None:
        first = ok(log.append(append("a1", "m1", key="req-1")))
        before = total(log)
        # A retry carries new event ids (it was decided again); the original ones come back.
        retry = ok(log.append(append("a1", "m1", key="req-1")))
        assert retry.duplicate
        assert (retry.partition, retry.stream_id, retry.subject_version, retry.event_ids) == (
            first.partition, first.stream_id, first.subject_version, first.event_ids)
        assert total(log) == before
        # Even as a different command: the key is what identifies it.
        other = ok(log.append(append("a1", "m2", "create", key="req-1")))
        assert other.duplicate and other.stream_id == first.stream_id and total(log) == before

    def test_idempotency_keys_belong_to_one_org_and_agent(self, log: EventLog) -> None:
        first = ok(log.append(append("a1", "m1", key="same")))
        second = ok(log.append(append("a2", "m1", key="same")))
        third = ok(log.append(append("a1", "m1", key="same", org="org-other")))
        assert not second.duplicate and not third.duplicate
        assert len({first.event_ids, second.event_ids, third.event_ids}) == 3

    def test_a_key_repeated_within_one_batch_appends_once(self, log: EventLog) -> None:
        first, again = log.append_many([append("a1", "m1", key="k"), append("a1", "m1", key="k")])
        assert ok(again).duplicate and ok(again).event_ids == ok(first).event_ids
        assert total(log) == 1

    def test_original_receipts_reads_keys_without_appending(self, log: EventLog) -> None:
        seen = ok(log.append(append("a1", "m1", key="seen")))
        found = log.original_receipts([append("a1", "m1", key="seen"), append("a1", "m2", key="unseen"),
                                       append("a1", "m3")])
        assert found[1:] == [None, None]
        assert found[0] is not None and found[0].duplicate
        assert (found[0].partition, found[0].stream_id, found[0].event_ids) == (
            seen.partition, seen.stream_id, seen.event_ids)
        assert total(log) == 1

    def test_a_rejected_command_keeps_no_idempotency_key(self, log: EventLog) -> None:
        rejected = log.append(append("a1", "m1", "change", key="k"))
        assert isinstance(rejected, UnknownSubject)
        ok(log.append(append("a1", "m1", key="k2")))
        assert not ok(log.append(append("a1", "m1", "change", key="k"))).duplicate

    # -- the write-side rules --------------------------------------------------------------

    def test_an_expected_version_other_than_the_current_is_a_conflict(self, log: EventLog) -> None:
        ok(log.append(append("a1", "m1")))
        ok(log.append(append("a1", "m1", "change", expected=1)))
        before = total(log)
        conflict = log.append(append("a1", "m1", "change", expected=1))
        assert isinstance(conflict, VersionConflict) and conflict.current_version == 2
        assert "m1" in str(conflict)
        assert total(log) == before
        assert ok(log.append(append("a1", "m1", "change", expected=2))).subject_version == 3
        # `create` with an expected version of 0 is "only if absent", stated as a version.
        assert isinstance(log.append(append("a1", "m2", expected=1)), VersionConflict)
        assert ok(log.append(append("a1", "m2", expected=0))).subject_version == 1

    def test_create_unknown_and_forgotten_subjects(self, log: EventLog) -> None:
        assert isinstance(log.append(append("a1", "m1", "change")), UnknownSubject)
        assert isinstance(log.append(append("a1", "m1", "touch")), UnknownSubject)
        assert isinstance(log.append(append("a1", "m1", "end")), UnknownSubject)
        ok(log.append(append("a1", "m1")))
        assert isinstance(log.append(append("a1", "m1")), SubjectExists)
        ended = ok(log.append(append("a1", "m1", "end")))
        assert ended.subject_version == 2
        for mode in ("change", "touch", "end"):
            rejected = log.append(append("a1", "m1", mode))  # type: ignore[arg-type]
            assert isinstance(rejected, SubjectForgotten), mode
        assert isinstance(log.append(append("a1", "m1")), SubjectExists)  # an ended id stays taken
        assert total(log) == 2

    def test_subjects_are_told_apart_by_kind_org_and_agent(self, log: EventLog) -> None:
        ok(log.append(append("a1", "x1")))
        assert not isinstance(log.append(append("a1", "x1", kind="s")), CommandError)
        assert not isinstance(log.append(append("a2", "x1")), CommandError)
        assert not isinstance(log.append(append("a1", "x1", org="org-other")), CommandError)

    def test_touch_appends_without_changing_the_version(self, log: EventLog) -> None:
        ok(log.append(append("a1", "m1")))
        touched = ok(log.append(append("a1", "m1", "touch", events=2)))
        assert touched.subject_version == 1
        assert [r.event.subject_version for r in log.read(touched.partition)] == [1, 1, 1]
        assert ok(log.append(append("a1", "m1", "change"))).subject_version == 2

    def test_subject_state_is_the_write_side_state(self, log: EventLog) -> None:
        memory, session = Subject("m", ORG, "a1", "x1"), Subject("s", ORG, "a1", "x1")
        assert log.subject_state(memory) == SubjectState() and not log.has_subject(memory)
        ok(log.append(append("a1", "x1", events=2)))
        assert log.subject_state(memory) == SubjectState(2, "live") and log.has_subject(memory)
        assert not log.has_subject(session)
        ok(log.append(append("a1", "x1", "end")))
        assert log.subject_state(memory) == SubjectState(3, "ended") and log.has_subject(memory)

    def test_each_command_in_a_batch_has_its_own_outcome(self, log: EventLog) -> None:
        agents = agents_apart(log, 3)
        ok(log.append(append(agents[0], "taken")))
        batch = [append(agents[0], "new-0"), append(agents[0], "taken"), append(agents[1], "missing", "change"),
                 append(agents[1], "new-1"), append(agents[-1], "new-2", key="k")]
        outcomes = log.append_many(batch)
        assert [type(o).__name__ for o in outcomes] == ["Receipt", "SubjectExists", "UnknownSubject", "Receipt",
                                                        "Receipt"]
        assert [ok(outcomes[i]).partition for i in (0, 3, 4)] == [log.partition_of(ORG, a) for a in
                                                                  (agents[0], agents[1], agents[-1])]
        assert total(log) == 4

    def test_a_subjects_events_keep_their_order(self, log: EventLog) -> None:
        agents = agents_apart(log, 2)
        receipts = [ok(log.append(append(agents[0], "m1")))]
        for round_ in range(5):
            batch = [append(agents[0], "m1", "change", events=2), append(agents[1], f"other-{round_}"),
                     append(agents[0], f"neighbour-{round_}"), append(agents[0], "m1", "change")]
            outcomes = log.append_many(batch)
            receipts += [ok(outcomes[0]), ok(outcomes[3])]
        assert [r.subject_version for r in receipts] == [1, *[v for n in range(5) for v in (3 * n + 3, 3 * n + 4)]]
        mine = [r for r in log.iter_partition(receipts[0].partition) if r.event.subject_id == "m1"
                and r.event.agent_id == agents[0]]
        assert [r.event.subject_version for r in mine] == list(range(1, 17))
        assert [r.position.key for r in mine] == sorted(r.position.key for r in mine)
        assert len({r.position.stream_id for r in mine}) == 16

    # -- reading ---------------------------------------------------------------------------

    def _fill(self, log: EventLog, count: int, agent: str = "a1") -> list[str]:
        """`count` events in `agent`'s partition; their ids, oldest first."""
        for n in range(count):
            ok(log.append(append(agent, f"m{n}")))
        return ids(log.iter_partition(log.partition_of(ORG, agent)))

    def test_read_after_and_until(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        assert log.read(p) == [] and log.head(p) is None and log.first(p) is None and log.length(p) == 0
        stream = self._fill(log, 12)
        assert len(stream) == 12
        assert ids(log.read(p, count=5)) == stream[:5]
        assert ids(log.read(p, after=stream[4], count=3)) == stream[5:8]
        assert ids(log.read(p, after=stream[4], until=stream[6])) == stream[5:7]
        assert ids(log.read(p, after=stream[-1])) == []
        assert ids(log.iter_partition(p, after=stream[1], until=stream[9], batch=3)) == stream[2:10]
        # A bare millisecond bound covers its every sequence number.
        last_ms = str(stream_id_key(stream[-1])[0])
        assert ids(log.read(p, until=last_ms)) == stream

    def test_read_reverse_is_newest_first(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        stream = self._fill(log, 9)
        assert ids(log.read_reverse(p, count=4)) == stream[::-1][:4]
        assert ids(log.read_reverse(p, until=stream[6], since=stream[2])) == stream[2:7][::-1]
        assert ids(log.iter_reverse(p, batch=2)) == stream[::-1]
        assert ids(log.iter_reverse(p, until=stream[5], since=stream[1], batch=2)) == stream[1:6][::-1]
        assert all(log.read_reverse(q) == [] for q in range(log.partitions) if q != p)

    def test_event_at_reads_one_position(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        stream = self._fill(log, 3)
        found = log.event_at(p, stream[1])
        assert found is not None and found.position.stream_id == stream[1] and found.event.subject_id == "m1"
        ms, seq = stream_id_key(stream[-1])
        assert log.event_at(p, f"{ms}-{seq + 1}") is None

    def test_head_first_length_and_count_after(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        stream = self._fill(log, 10)
        assert (log.head(p), log.first(p), log.length(p)) == (stream[-1], stream[0], 10)
        assert log.count_after(p, "0-0", 1000) == 10
        assert log.count_after(p, stream[3], 1000) == 6
        assert log.count_after(p, stream[3], 4) == 4  # capped
        assert log.count_after(p, stream[3], 1000, before=stream[7]) == 3
        assert log.count_after(p, stream[7], 1000, before=stream[3]) == 0
        assert log.count_after(p, stream[-1], 1000) == 0

    def test_count_after_by_type_reads_the_envelope_only(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        transcript = (ev.Message(role="user", content='"type":"MemoryStored"'),)
        ok(log.append(append("a1", "s1", kind="s", payloads=[ev.SessionIngested(transcript=transcript)])))
        # Payloads that mention a type, in a string or as a member, are not of that type.
        ok(log.append(append("a1", "m1", payloads=[ev.MemoryStored(content='{"type":"SessionIngested"}')])))
        ok(log.append(append("a1", "m2", payloads=[ev.MemoryStored(content="x",
                                                                   metadata={"type": "SessionIngested"})])))
        assert log.count_after(p, "0-0", 100, types=("SessionIngested",)) == 1
        assert log.count_after(p, "0-0", 100, types=("MemoryStored",)) == 2
        assert log.count_after(p, "0-0", 100, types=("SessionIngested", "MemoryStored")) == 3
        assert log.count_after(p, "0-0", 100, types=("MemoryForgotten",)) == 0

    # -- waiting ---------------------------------------------------------------------------

    def test_wait_returns_what_is_there_at_once(self, log: EventLog) -> None:
        agents = agents_apart(log, 2)
        receipts = [ok(log.append(append(a, "m1"))) for a in agents]
        cursors = {r.partition: "0-0" for r in receipts}
        started = time.monotonic()
        found = log.wait(cursors, 10, 5000)
        assert time.monotonic() - started < 2
        assert {r.position for r in found} == {r.position for r in receipts} and len(found) == len(receipts)
        assert log.wait({r.partition: r.stream_id for r in receipts}, 10, None) == []

    def test_wait_blocks_until_an_append_and_returns_it(self, log: EventLog) -> None:
        agents = agents_apart(log, 2)
        cursors = {log.partition_of(ORG, a): "0-0" for a in agents}
        appended: list[Receipt] = []

        def later() -> None:
            time.sleep(0.3)
            appended.append(ok(log.append(append(agents[-1], "late"))))

        writer = threading.Thread(target=later)
        started = time.monotonic()
        writer.start()
        found = log.wait(cursors, 10, 10_000)
        waited = time.monotonic() - started
        writer.join()
        assert 0.2 <= waited < 5
        assert [r.position for r in found] == [appended[0].position]
        assert found[0].event.subject_id == "late"

    def test_wait_gives_up_after_its_block_time(self, log: EventLog) -> None:
        started = time.monotonic()
        assert log.wait({p: "0-0" for p in range(log.partitions)}, 10, 200) == []
        assert 0.15 <= time.monotonic() - started < 3

    def test_wait_entries_are_undecoded_entries_of_the_same_events(self, log: EventLog) -> None:
        receipt = ok(log.append(append("a1", "m1")))
        [(partition, stream_id, fields)] = log.wait_entries({receipt.partition: "0-0"}, 10, 100)
        assert (partition, stream_id) == (receipt.partition, receipt.stream_id)
        assert fields  # the stored form, decoded by ledger.codec.decode_entry

    def test_read_entries_are_the_undecoded_form_of_read(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        stream = self._fill(log, 6)
        entries = log.read_entries(p, after=stream[1], count=3)
        assert [(partition, sid) for partition, sid, _ in entries] == [(p, sid) for sid in stream[2:5]]
        # Decoded, they are exactly what `read` returns for the same range.
        assert [decode_entry(*entry) for entry in entries] == log.read(p, after=stream[1], count=3)
        assert [sid for _, sid, _ in log.read_entries(p, after=stream[1], until=stream[3])] == stream[2:4]
        assert log.read_entries(p, after=stream[-1]) == []
        assert all(log.read_entries(q) == [] for q in range(log.partitions) if q != p)

    # -- trimming and history --------------------------------------------------------------

    def test_trim_removes_only_what_is_below_and_marks_it(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        assert log.trim(p, "1-0") == Trimmed(0, None) and log.trimmed_through(p) is None
        stream = self._fill(log, 10)
        assert log.trim(p, stream[4]) == Trimmed(4, stream[3])
        assert (log.first(p), log.length(p), log.trimmed_through(p)) == (stream[4], 6, stream[3])
        assert ids(log.iter_partition(p)) == stream[4:]
        # The mark never moves back, and a trim with nothing below removes nothing.
        assert log.trim(p, stream[2]) == Trimmed(0, stream[3])
        assert log.trim(p, stream[4]) == Trimmed(0, stream[3])
        # Other partitions are untouched.
        assert all(log.trimmed_through(q) is None for q in range(log.partitions) if q != p)

    def test_trim_refuses_a_malformed_position(self, log: EventLog) -> None:
        with pytest.raises(ValueError, match="not a stream id"):
            log.trim(0, "yesterday")

    def test_history_reads_the_archive_then_the_stream(self, log: EventLog, settings: Settings) -> None:
        p = log.partition_of(ORG, "a1")
        archived = self._fill(log, 8)
        assert ids(log.history(p)) == archived  # never trimmed: the stream alone is complete
        self.archive_everything(settings)
        for n in range(8, 12):
            ok(log.append(append("a1", f"m{n}")))
        stream = ids(log.iter_partition(p))
        # When the stream is trimmed below what the archive holds
        assert log.trim(p, archived[6]).removed == 6
        # Then history through the archive is still complete, oldest first, each event once
        assert ids(log.history(p, source=settings)) == stream
        assert ids(log.history(p, after=archived[2], until=stream[9], source=settings)) == stream[3:10]
        # and a read of the stream alone refuses rather than skipping what is gone
        with pytest.raises(HistoryGap):
            list(log.history(p))
        assert ids(log.history(p, after=archived[5])) == stream[6:]

    def test_load_writes_history_as_it_is(self, log: EventLog) -> None:
        p = log.partition_of(ORG, "a1")
        bodies = [encode(event("a1", f"m{n}", ev.MemoryStored(content=f"imported {n}"))) for n in range(3)]
        assert log.load(p, [("1000-0", 1, bodies[0]), ("1000-1", 4, bodies[1]), ("2000-0", 1, bodies[2])]) == 3
        loaded = log.read(p)
        assert ids(loaded) == ["1000-0", "1000-1", "2000-0"]
        assert [r.event.subject_version for r in loaded] == [1, 4, 1] and loaded[1].raw == bodies[1]
        # Out of order, or not above the head: refused whole
        with pytest.raises(ValueError, match="nothing was loaded"):
            log.load(p, [("3000-0", 1, bodies[0]), ("2500-0", 1, bodies[1])])
        with pytest.raises(ValueError, match="nothing was loaded"):
            log.load(p, [("2000-0", 1, bodies[0])])
        assert log.length(p) == 3
        # The write side knows nothing of it: the loaded subjects are absent to appends
        assert not log.has_subject(Subject("m", ORG, "a1", "m0"))
        assert ok(log.append(append("a1", "m0"))).subject_version == 1

    # -- the server and its helpers --------------------------------------------------------

    def test_server_facts(self, log: EventLog) -> None:
        facts = log.server()
        assert facts.product and facts.version
        assert isinstance(facts.persistence.durable, bool) and facts.persistence.describe()

    def test_the_rate_limiter_shares_one_bucket_per_org(self, log: EventLog) -> None:
        limiter = log.rate_limiter(rate=1.0, burst=3)
        granted = limiter.take({ORG: 5, "org-other": 1})
        assert granted[ORG][0] == 3 and granted[ORG][1] > 0
        assert granted["org-other"] == (1, 0.0)
        assert log.rate_limiter(rate=1.0, burst=3).take({ORG: 1})[ORG][0] == 0
        assert limiter.last_left(ORG) == (0, 3.0) and limiter.last_left(ORG) is None  # noted once
        assert limiter.last_left("org-other") == (2, 1.0)

    def test_partition_keys_are_for_helpers_beside_the_log(self, log: EventLog) -> None:
        keys = {log.partition_key(p, "lease:x") for p in range(log.partitions)}
        assert len(keys) == log.partitions and log.partition_key(0, "lease:y") not in keys
        for name in ("stream", "subjects", "trimmed", "idem:k", ""):
            with pytest.raises(ValueError):
                log.partition_key(0, name)
        # A helper's script runs on the log's server against such a key (here the rate bucket's).
        script = log.script("rate_limit.lua")
        assert script.run([log.partition_key(0, "bucket")], [1.0, 2, 5]) == [2, 1000, 0]

    def test_the_workers_client_reaches_the_logs_server(self, log: EventLog) -> None:
        assert log.redis_client_for_workers().ping()
