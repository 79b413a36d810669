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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
import redis
from pydantic import ValidationError

from .codec import decode_entry, from_dict
from .errors import EventError, LedgerError, StoreUnavailable
from .events import Position, RecordedEvent, stream_id_key
from .log import RedisEventLog
from .partitions import Keys
from .settings import Settings

__all__ = ["HistoryGap", "archive_count", "archive_estimate", "event_at", "read_archive", "read_from", "stream_range",
           "trimmed_key", "trimmed_through"]

PAGE = 5000
EXACT_BELOW = 200_000  # archive rows up to which estimates are exact counts
_RANGE = """
FROM event_archive WHERE partition = %(p)s AND (stream_ms, stream_seq) > (%(a_ms)s, %(a_seq)s)
  AND (stream_ms, stream_seq) <= (%(u_ms)s, %(u_seq)s)
"""
_SELECT = ("SELECT stream_ms, stream_seq, subject_version, schema_version, body::text"
           + _RANGE + "ORDER BY stream_ms, stream_seq")
_MAX = (2**63 - 1, 2**31 - 1)  # beyond any stream id the archive can hold


class HistoryGap(LedgerError):
    """Events needed for a read were trimmed from the stream and are not in the archive."""

    exit_code = 8


def trimmed_key(keys: Keys, partition: int) -> str:
    """String key: the newest stream id `ledger trim` removed from the partition."""
    return f"{keys.tag(partition)}:trimmed"


def trimmed_through(log: RedisEventLog, partition: int) -> str | None:
    value = log.client.get(trimmed_key(log.keys, partition))
    return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))


def _bound(until: str | None) -> tuple[int, int]:
    return _MAX if until is None or until == "+" else stream_id_key(until)


@contextmanager
def _connection(source: Settings | psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(source, psycopg.Connection):
        yield source
        return
    from .connections import database_url

    try:
        conn = psycopg.connect(database_url(source), options=f"-c search_path={source.db_schema}")
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"PostgreSQL is unreachable: {e}") from e
    with conn:
        yield conn


def archive_count(conn: psycopg.Connection[Any], partition: int, after: str = "0-0", until: str | None = None) -> int:
    """How many archived events of `partition` lie in (after, until]."""
    row = conn.execute("SELECT count(*)" + _RANGE, _range_args(partition, after, until)).fetchone()
    return int(row[0]) if row else 0


def archive_estimate(conn: psycopg.Connection[Any], partition: int, after: str = "0-0",
                     until: str | None = None) -> int:
    """About how many archived events of `partition` lie in (after, until]: exact while the
    archive is small, else the planner's estimate (counting a large range visits every row)."""
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass('event_archive')").fetchone()
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

    One transaction (one snapshot) on `conn`, which must not be used for anything else
    until the iterator is exhausted or closed.
    """
    with conn.transaction(), conn.cursor(name=f"archive_p{partition}") as cur:
        cur.itersize = page
        cur.execute(_SELECT, _range_args(partition, after, until))
        while rows := cur.fetchmany(page):
            yield from (_decode_row(partition, *row) for row in rows)


def _decode_row(partition: int, ms: int, seq: int, subject_version: int, schema_version: int,
                body: str) -> RecordedEvent:
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
        with log.client.pipeline(transaction=True) as pipe:
            pipe.get(trimmed_key(log.keys, partition))
            pipe.xrange(log.keys.stream(partition), f"({after}", until, count=count)
            mark, entries = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as e:
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
              after: str = "0-0", until: str | None = None, page: int = PAGE) -> Iterator[RecordedEvent]:
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
                for r in read_archive(conn, partition, cursor, until, page):
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
        return _decode_row(partition, *row)
    entries = stream_range(log, partition, stream_id, stream_id, 1)
    return decode_entry(partition, stream_id, entries[0][1]) if entries else None


def stream_range(log: RedisEventLog, partition: int, start: str, end: str,
                 count: int) -> list[tuple[str, dict[Any, Any]]]:
    """Raw XRANGE entries (id as text, undecoded fields); `start` may be exclusive: "(id"."""
    try:
        reply: Any = log.client.xrange(log.keys.stream(partition), start, end, count=count)
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise StoreUnavailable(f"Redis is unreachable: {e}") from e
    return [(sid.decode() if isinstance(sid, bytes) else str(sid), fields) for sid, fields in reply or []]
