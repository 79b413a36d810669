"""Reading history: the PostgreSQL event archive (the log's cold tier), then the Redis stream.

`read_from(source, log, partition, after)` yields the events of one partition strictly after
stream id `after`, oldest first: first the archived ones (table `event_archive`, in position
order, read through a server-side cursor in large pages), then, seamlessly, the stream
entries after the last archived position. Every body goes through `ledger.codec.from_dict`,
so old payload versions are upcast exactly as on the live path.

Trimming and gaps. `memledger ledger trim` removes stream entries only below what the
archive (and every projection) has checkpointed, and records per partition the newest id
it removed, under `{ns:pN}:trimmed`. A reader that reaches the stream at a cursor below
that mark would silently skip events, so it first looks in the archive again (the archive
may have grown while we read) and, if the archive cannot bridge the gap either, raises
`HistoryGap`. The mark and the stream page are read in one MULTI, and the trim writes the
mark in the same script as its XTRIM, so a trim can never slip between the two.

Gaps inside the archive. A gap (an event the archive does not hold, below rows it does hold)
is read from the stream in its place, or stops the read with `HistoryGap`; it is never
jumped over. Two kinds:
- Known gaps: the archive's dead letters (table `dead_letters`, projection 'archive') whose
  event it lacks. The archive projector no longer dead-letters (it stops instead), but an
  older one did. Each is read from the stream at its position (`known_gaps`).
- Unknown gaps (rows deleted by hand, a time partition dropped): `coverage` counts them
  against the stream's own counters: XINFO STREAM says how many entries the stream ever had
  (`entries-added`, Redis 7+) and how many it holds, and its first entry F. Every entry below
  F was removed, so the archive must hold (or know as a dead letter) as many events below F;
  and from F to the archive's newest row, as many as the stream holds there (its length less
  the tail past that row). A read that starts at or below the trim mark (a rebuild from
  scratch; a later read would pay for counting what it does not read) checks this first:
  events missing below F are lost (HistoryGap), missing from F on are read from the stream
  (the archive is then used below F only). One index-only count per such read, and nothing
  when the stream holds nothing the archive does (the benchmark's case). On Redis 6.2 (no
  `entries-added`) only the part the stream still holds is checked.

Time partitions. `event_archive` is partitioned by month of stream time (`stream_ms`, the
Redis clock that orders the ledger), one table `event_archive_yYYYYmMM` per month: a month
is then a contiguous range of positions of every ledger partition, so reads by position
prune to the months they span, and retiring old months removes a prefix of history (which
the gap checks above recognise) rather than holes. There is no default partition: each
writer creates the partitions of its rows' months before writing them (`ensure_months`),
so a row can never land in a catch-all table that would later block creating its month.

This module is the archive's only door: every statement on `event_archive` is here (the
archive projection's inserts, history and event look-ups for queries and workers, the
counts a rebuild plans with). Connections come from `ledger.postgres`.
"""

from __future__ import annotations

from ledger.errors import HistoryGap

import logging
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

import orjson
import psycopg
from psycopg.rows import tuple_row
from pydantic import ValidationError

from .archive_coverage import MAX_POSITION as _MAX
from .archive_coverage import Coverage, coverage, known_gaps, newest_archived
from .archive_months import ensure_months
from .codec import decode_entry, from_dict
from .connections import REDIS_TRANSIENT, node_client
from .errors import EventError, StoreUnavailable
from .events import Position, RecordedEvent, stream_id_key
from .log import RedisEventLog
from .partitions import Keys
from .postgres import connect, translated
from .settings import Settings

__all__ = ["COLUMNS", "Coverage", "HistoryGap", "archive_count", "archive_estimate", "copy_rows", "coverage",
           "decode_row", "event_at", "insert", "known_gaps", "later_of_subject", "newest_archived", "read_archive",
           "read_from", "stream_range", "trimmed_key", "trimmed_through"]

log_ = logging.getLogger("memledger.archive")
PAGE = 5000
EXACT_BELOW = 200_000  # archive rows up to which estimates are exact counts
# The plain bounds on stream_ms repeat the row comparison's: the planner prunes months by them
# (it does not by a row comparison).
_RANGE = """
FROM event_archive WHERE partition = %(p)s AND (stream_ms, stream_seq) > (%(a_ms)s, %(a_seq)s)
  AND (stream_ms, stream_seq) <= (%(u_ms)s, %(u_seq)s) AND stream_ms BETWEEN %(a_ms)s AND %(u_ms)s
"""
_SELECT = ("SELECT stream_ms, stream_seq, subject_version, schema_version, body::text"
           + _RANGE + "ORDER BY stream_ms, stream_seq")


def trimmed_key(keys: Keys, partition: int) -> str:
    """String key: the newest stream id `EventLog.trim` removed from the partition."""
    return keys.trimmed(partition)


def trimmed_through(log: RedisEventLog, partition: int) -> str | None:
    """The newest id a trim removed from the partition (`EventLog.trimmed_through`)."""
    return log.trimmed_through(partition)


def _bound(until: str | None) -> tuple[int, int]:
    return _MAX if until is None or until == "+" else stream_id_key(until)


@contextmanager
def _connection(source: Settings | psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(source, psycopg.Connection):
        yield source
        return
    with connect(source) as conn, translated():
        yield conn


# -- writing -----------------------------------------------------------------------------

#: The archive's columns, in the order `insert` and `copy_rows` take them.
COLUMNS = ("event_id", "partition", "stream_ms", "stream_seq", "org_id", "agent_id", "subject_id", "subject_version",
           "type", "schema_version", "occurred_at", "body")
_COLUMN_LIST = ", ".join(COLUMNS)
# One JSON array per batch, turned into rows by PostgreSQL: much cheaper than adapting
# each value in Python. Bodies are embedded unparsed (orjson.Fragment).
_INSERT = (f"INSERT INTO event_archive ({_COLUMN_LIST}) SELECT {_COLUMN_LIST}"
           " FROM jsonb_populate_recordset(NULL::event_archive, %s::jsonb)")


def insert(cur: psycopg.Cursor[Any], events: Sequence[RecordedEvent]) -> None:
    """Archive `events` inside the caller's transaction, each body as stored (its original
    schema version; upcast on read). An event archived already violates the unique key
    (its position, or its event id with its month: both include the partition key)."""
    ensure_months(cur.connection, (r.position.key[0] for r in events))
    cur.execute(_INSERT, (orjson.dumps([_row(r) for r in events]).decode(),))


def _row(r: RecordedEvent) -> dict[str, object]:
    e, (ms, seq) = r.event, r.position.key
    return {"event_id": e.event_id, "partition": r.position.partition, "stream_ms": ms, "stream_seq": seq,
            "org_id": e.org_id, "agent_id": e.agent_id, "subject_id": e.subject_id,
            "subject_version": e.subject_version, "type": e.type, "schema_version": r.stored_version,
            "occurred_at": e.occurred_at, "body": orjson.Fragment(r.raw)}


def copy_rows(conn: psycopg.Connection[Any], rows: Iterable[Sequence[Any]]) -> None:
    """COPY raw rows (values in `COLUMNS` order; the body as JSON text) into the archive, in the
    caller's transaction: the fastest way in, for loading history in bulk (the benchmark).
    One COPY per chunk of rows, the months of each chunk created first."""
    it = iter(rows)
    while chunk := list(islice(it, PAGE * 10)):
        ensure_months(conn, (int(row[2]) for row in chunk))
        with conn.cursor() as cur, cur.copy(f"COPY event_archive ({_COLUMN_LIST}) FROM STDIN") as copy:
            for row in chunk:
                copy.write_row(row)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def archive_count(conn: psycopg.Connection[Any], partition: int, after: str = "0-0", until: str | None = None) -> int:
    """How many archived events of `partition` lie in (after, until]."""
    row = conn.execute("SELECT count(*)" + _RANGE, _range_args(partition, after, until)).fetchone()
    return int(row[0]) if row else 0


def archive_estimate(conn: psycopg.Connection[Any], partition: int, after: str = "0-0",
                     until: str | None = None) -> int:
    """About how many archived events of `partition` lie in (after, until]: exact while the
    archive is small, else the planner's estimate (counting a large range visits every row)."""
    # A partitioned parent has no reltuples of its own (autovacuum never analyses it): its months'.
    row = conn.execute("SELECT sum(greatest(c.reltuples, 0)) FROM pg_partition_tree(to_regclass('event_archive')) t"
                       " JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf").fetchone()
    if row is None or row[0] is None or row[0] < EXACT_BELOW:  # -1: never analysed
        return archive_count(conn, partition, after, until)
    plan = conn.execute("EXPLAIN (FORMAT JSON) SELECT 1" + _RANGE, _range_args(partition, after, until)).fetchone()
    return int(plan[0][0]["Plan"]["Plan Rows"]) if plan else 0


def _range_args(partition: int, after: str, until: str | None) -> dict[str, int]:
    # Clamped to the column types (bigint, integer) so the position index stays usable.
    (a_ms, a_seq), (u_ms, u_seq) = stream_id_key(after), _bound(until)
    return dict(p=partition, a_ms=min(a_ms, _MAX[0]), a_seq=min(a_seq, _MAX[1]), u_ms=min(u_ms, _MAX[0]),
                u_seq=min(u_seq, _MAX[1]))


def read_archive(conn: psycopg.Connection[Any], partition: int, after: str = "0-0", until: str | None = None,
                 page: int = PAGE) -> Iterator[RecordedEvent]:
    """Archived events of one partition in (after, until], oldest first, upcast.

    Only the rows the archive holds: `read_from` is what fills the archive's gaps.

    One transaction (one snapshot) on `conn`, which must not be used for anything else
    until the iterator is exhausted or closed.
    """
    with conn.transaction(), conn.cursor(name=f"archive_p{partition}") as cur:
        cur.itersize = page
        cur.execute(_SELECT, _range_args(partition, after, until))
        while rows := cur.fetchmany(page):
            yield from (decode_row(partition, *row) for row in rows)


def decode_row(partition: int, ms: int, seq: int, subject_version: int, schema_version: int,
               body: str) -> RecordedEvent:
    """One archive row (position, versions, body) as the event it holds, upcast; EventError
    naming its position if the body cannot be decoded."""
    sid = f"{ms}-{seq}"
    try:
        event = from_dict(orjson.loads(body), subject_version)
    except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError, EventError) as e:
        raise EventError(f"archived event at partition {partition} id {sid} cannot be decoded: {e}") from e
    return RecordedEvent(Position(partition, sid), event, body.encode(), schema_version)


class _Trimmed(Exception):
    def __init__(self, mark: str):
        self.mark = mark


def _stream_page(log: RedisEventLog, partition: int, after: str, until: str, count: int) -> list[RecordedEvent]:
    """One page of the stream after `after`, or _Trimmed if entries after `after` were trimmed."""
    try:
        with node_client(log.client, log.keys.stream(partition)).pipeline(transaction=True) as pipe:
            pipe.get(trimmed_key(log.keys, partition))
            pipe.xrange(log.keys.stream(partition), f"({after}", until, count=count)
            mark, entries = pipe.execute()
    except REDIS_TRANSIENT as e:
        raise StoreUnavailable(f"Redis is unreachable: {e}") from e
    if mark is not None and stream_id_key(after) < stream_id_key(mark.decode()):
        raise _Trimmed(mark.decode())
    out = []
    for sid, fields in entries:
        try:
            out.append(decode_entry(partition, sid, fields))
        except EventError as e:
            raise EventError(f"stream entry at partition {partition} id {sid.decode()} cannot be decoded: {e}") from e
    return out


def _read_stream(log: RedisEventLog, partition: int, after: str, until: str | None,
                 page: int) -> Iterator[RecordedEvent]:
    end = "+" if until is None else until
    while True:
        chunk = _stream_page(log, partition, after, end, page)
        yield from chunk
        if len(chunk) < page:
            return
        after = chunk[-1].position.stream_id


def read_from(source: Settings | psycopg.Connection[Any] | None, log: RedisEventLog, partition: int,
              after: str = "0-0", until: str | None = None, page: int = PAGE) -> Generator[RecordedEvent, None, None]:
    """Every event of `partition` in (after, until], from the archive and then the stream.

    `source` is where the archive lives (settings, or a connection dedicated to this read
    whose search_path names the archive's schema); None reads the stream alone (the
    archive projection's own rebuild), which raises HistoryGap if the stream was trimmed
    past `after`.
    """
    cursor, stalled = after, False
    with _connection(source) if source is not None else _nothing() as conn:
        while True:
            from_archive = 0
            if conn is not None:
                for r in _archived(conn, log, partition, cursor, until, page):
                    from_archive += 1
                    cursor = r.position.stream_id
                    yield r
            try:
                for r in _read_stream(log, partition, cursor, until, page):
                    cursor = r.position.stream_id
                    yield r
                return
            except _Trimmed as gap:
                # The archive may have grown since its snapshot (and a trim followed): read
                # it again, and give up only when a second look finds nothing new either.
                if conn is None or (stalled and from_archive == 0):
                    raise _gap(partition, cursor, gap.mark, conn is None) from None
                stalled = from_archive == 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _archived(conn: psycopg.Connection[Any], log: RedisEventLog, partition: int, after: str, until: str | None,
              page: int) -> Iterator[RecordedEvent]:
    """The archive's events in (after, until], each known gap read in its place; it ends early
    where the archive is not to be trusted, and the stream goes on from there."""
    gaps, end = _plan(conn, log, partition, after, until)
    for gap in gaps:
        yield from read_archive(conn, partition, after, _before(gap), page)
        yield _gap_event(conn, log, partition, gap)
        after = gap
    yield from read_archive(conn, partition, after, end, page)


def _plan(conn: psycopg.Connection[Any], log: RedisEventLog, partition: int, after: str,
          until: str | None) -> tuple[list[str], str | None]:
    """The known gaps among the archive's rows in (after, until], and where reading the archive ends."""
    end, mark = until, trimmed_through(log, partition)
    with conn.transaction():
        newest: str | None = None
        if stream_id_key(after) <= stream_id_key(mark or "0-0"):
            cov = coverage(conn, log, partition)
            newest = cov.newest
            _refuse_lost(cov, after, mark)
            if cov.unarchived and cov.first is not None:
                log_.warning("partition %s: the archive lacks %s the stream holds from %s on, with no dead "
                             "letter (rows deleted?); reading that part from the stream", partition,
                             _plural(cov.unarchived, "event"), cov.first)
                end = _lower(until, _before(cov.first))
        gaps = known_gaps(conn, partition)
        newest = newest or (newest_archived(conn, partition) if gaps else None)
    if newest is None:
        return [], end
    # A gap past the archive's newest row is no gap: the stream, read after that row, has it.
    last = stream_id_key(_lower(end, newest) or newest)
    return [g for g in gaps if stream_id_key(after) < stream_id_key(g) <= last], end


def _refuse_lost(cov: Coverage, after: str, mark: str | None) -> None:
    if not cov.lost or cov.first is None or stream_id_key(after) >= stream_id_key(cov.first):
        return
    if mark is not None and cov.newest is not None and stream_id_key(cov.newest) < stream_id_key(mark):
        return  # the archive ends below the trim: the stream read says so (`_gap`)
    raise HistoryGap(
        f"partition {cov.partition}: the archive lacks {_plural(cov.lost, 'event')} below {cov.first}, where the "
        f"stream now begins (trimmed through {mark}), and has no dead letter for them (rows deleted, or a "
        "partition of event_archive dropped?); history cannot be replayed past them: restore event_archive from a "
        "backup that holds them")


def _gap_event(conn: psycopg.Connection[Any], log: RedisEventLog, partition: int, sid: str) -> RecordedEvent:
    """The event of a known gap: the archive may hold it by now (re-driven), else the stream must."""
    try:
        with conn.transaction():
            r = event_at(conn, log, partition, sid)
    except EventError as e:
        raise EventError(f"the event at partition {partition} id {sid} (dead-lettered by the archive, read from "
                         f"the stream) cannot be decoded: {e}") from e
    if r is None:
        raise HistoryGap(
            f"partition {partition}: the event at {sid} was dead-lettered by the archive, which does not hold it, "
            f"and the stream no longer has it (trimmed through {trimmed_through(log, partition)}); history cannot "
            "be replayed past it: restore it from a backup of the stream taken before that trim "
            "(`memledger replay dead-letters --projection archive` lists it)")
    return r


def _before(sid: str) -> str:
    """The position just before `sid`, in the archive's terms (its ranges include their upper end)."""
    ms, seq = stream_id_key(sid)
    return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{_MAX[1]}"


def _lower(a: str | None, b: str | None) -> str | None:
    """The lower of two upper bounds, None being no bound."""
    if a is None or b is None:
        return b if a is None else a
    return min(a, b, key=_bound)


def _gap(partition: int, cursor: str, mark: str, stream_only: bool) -> HistoryGap:
    source = "this read uses the stream alone" if stream_only else "the archive ends at that point"
    return HistoryGap(
        f"partition {partition}: the stream was trimmed through {mark}, past {cursor}, and {source}; "
        "the events in between can no longer be replayed from here")


def event_at(conn: psycopg.Connection[Any], log: RedisEventLog, partition: int, stream_id: str) -> RecordedEvent | None:
    """The one event at a position: from the archive, else from the stream; None if neither has it."""
    ms, seq = stream_id_key(stream_id)
    row = conn.execute("SELECT stream_ms, stream_seq, subject_version, schema_version, body::text FROM event_archive"
                       " WHERE partition = %s AND stream_ms = %s AND stream_seq = %s",
                       (partition, ms, min(seq, _MAX[1]))).fetchone()
    if row is not None:
        return decode_row(partition, *row)
    entries = stream_range(log, partition, stream_id, stream_id, 1)
    return decode_entry(partition, stream_id, entries[0][1]) if entries else None


def stream_range(log: RedisEventLog, partition: int, start: str, end: str,
                 count: int) -> list[tuple[str, dict[Any, Any]]]:
    """Raw XRANGE entries (id as text, undecoded fields); `start` may be exclusive: "(id"."""
    try:
        reply: Any = log.client.xrange(log.keys.stream(partition), start, end, count=count)
    except REDIS_TRANSIENT as e:
        raise StoreUnavailable(f"Redis is unreachable: {e}") from e
    return [(sid.decode() if isinstance(sid, bytes) else str(sid), fields) for sid, fields in reply or []]


def later_of_subject(conn: psycopg.Connection[Any], partition: int, org_id: str, subject_id: str, after: str,
                     until: str) -> str | None:
    """The position of an archived event of the subject in (after, until] of `partition`, if any."""
    args = _range_args(partition, after, until)
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT stream_ms, stream_seq" + _RANGE + " AND org_id = %(org)s AND subject_id = %(subject)s"
                          " LIMIT 1", {**args, "org": org_id, "subject": subject_id}).fetchone()
    return None if row is None else f"{row[0]}-{row[1]}"
