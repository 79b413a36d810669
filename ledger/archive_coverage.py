"""What the event archive lacks: its newest row per partition, its known gaps (dead letters of
an older archive projector), and `coverage`, which counts the rest against the stream's own
counters (the module docstring of `ledger.archive` says how reads use them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .connections import REDIS_TRANSIENT, node_client
from .errors import StoreUnavailable
from .events import stream_id_key
from .log import RedisEventLog

__all__ = ["MAX_POSITION", "TAIL_LIMIT", "Coverage", "coverage", "known_gaps", "newest_archived"]

#: Stream entries past the archive's newest row that `coverage` reads to count them; a longer
#: tail (the archive projector far behind) leaves the part the stream holds unchecked.
TAIL_LIMIT = 10_000
MAX_POSITION = (2**63 - 1, 2**31 - 1)  # beyond any stream id the archive can hold
_NEWEST = ("SELECT stream_ms, stream_seq FROM event_archive WHERE partition = %s"
           " ORDER BY stream_ms DESC, stream_seq DESC LIMIT 1")
# The archive's dead letters whose event it does not hold (a letter re-driven, or resolved by a
# rebuild of the archive, has its row): positions an older archive projector skipped.
_GAPS = """
SELECT DISTINCT split_part(stream_id, '-', 1)::bigint AS ms, split_part(stream_id, '-', 2)::bigint AS seq
FROM dead_letters d WHERE projection = 'archive' AND partition = %(p)s AND NOT EXISTS (
  SELECT 1 FROM event_archive a WHERE a.partition = d.partition
   AND a.stream_ms = split_part(d.stream_id, '-', 1)::bigint AND a.stream_seq = split_part(d.stream_id, '-', 2)::bigint)
"""
# Rows and known gaps up to the archive's newest row, below the stream's first entry and from
# it on; one statement, so one snapshot (a re-drive moves a letter into a row atomically).
_HELD = f"""
WITH gaps AS ({_GAPS}), held AS (
  SELECT stream_ms AS ms, stream_seq AS seq FROM event_archive
  WHERE partition = %(p)s AND (stream_ms, stream_seq) <= (%(n_ms)s, %(n_seq)s)
  UNION ALL SELECT ms, seq FROM gaps WHERE (ms, seq) <= (%(n_ms)s, %(n_seq)s))
SELECT count(*) FILTER (WHERE (ms, seq) < (%(f_ms)s, %(f_seq)s)),
       count(*) FILTER (WHERE (ms, seq) >= (%(f_ms)s, %(f_seq)s))
FROM held
"""


def newest_archived(conn: psycopg.Connection[Any], partition: int) -> str | None:
    """The position of the archive's newest event of `partition`; None while it holds none."""
    row = conn.execute(_NEWEST, (partition,)).fetchone()
    return None if row is None else f"{row[0]}-{row[1]}"


def known_gaps(conn: psycopg.Connection[Any], partition: int) -> list[str]:
    """Positions of `partition` the archive dead-lettered and does not hold, oldest first."""
    return [f"{ms}-{seq}" for ms, seq in sorted(conn.execute(_GAPS, {"p": partition}).fetchall())]


@dataclass(frozen=True)
class Coverage:
    """What the archive of one partition lacks, counted against the stream (module docstring)."""

    partition: int
    newest: str | None  # the archive's newest row
    first: str | None  # the stream's first entry: every entry below it was removed (None: no stream)
    lost: int | None  # events below `first` that the archive neither holds nor knows as dead letters
    unarchived: int | None  # events from `first` to `newest` the stream holds and the archive lacks (letters aside)
    # (None: not counted: no entries-added before Redis 7, or entries deleted one by one; a
    # tail past `newest` longer than TAIL_LIMIT)


@dataclass(frozen=True)
class _Counters:
    added: int | None  # entries the stream ever had; None if unknown (Redis 6.2) or some were XDELed
    length: int
    first: str
    tail: int | None  # entries after the archive's newest row; None past TAIL_LIMIT


def coverage(conn: psycopg.Connection[Any], log: RedisEventLog, partition: int) -> Coverage:
    """Count what the archive of `partition` lacks (one index-only count, skipped when there is
    nothing to compare: the stream holds nothing at or below the archive's newest row and never
    lost an entry)."""
    newest = newest_archived(conn, partition)
    c = None if newest is None else _counters(log, partition, newest)
    if newest is None or c is None:
        return Coverage(partition, newest, None, None, None)
    removed = None if c.added is None else c.added - c.length
    stream_held = None if c.tail is None else c.length - c.tail
    if not removed and not stream_held:
        return Coverage(partition, newest, c.first, removed, stream_held)
    (f_ms, f_seq), (n_ms, n_seq) = stream_id_key(c.first), stream_id_key(newest)
    args = dict(p=partition, f_ms=f_ms, f_seq=min(f_seq, MAX_POSITION[1]), n_ms=n_ms, n_seq=n_seq)
    held_low, held_high = conn.execute(_HELD, args).fetchone() or (0, 0)
    return Coverage(partition, newest, c.first, None if removed is None else max(0, removed - held_low),
                    None if stream_held is None else max(0, stream_held - held_high))


def _counters(log: RedisEventLog, partition: int, newest: str) -> _Counters | None:
    """The stream's counters and its tail past `newest`, in one MULTI (so appends in between
    change both alike; a trim changes neither); None if there is no stream."""
    key = log.keys.stream(partition)
    try:
        with node_client(log.client, key).pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(key)
            pipe.xrange(key, f"({newest}", "+", count=TAIL_LIMIT + 1)
            info, tail = pipe.execute(raise_on_error=False)
    except REDIS_TRANSIENT as e:
        raise StoreUnavailable(f"Redis is unreachable: {e}") from e
    if isinstance(info, Exception) or not info.get("length") or not info.get("first-entry"):
        return None
    deleted = info.get("max-deleted-entry-id")
    added = info.get("entries-added") if deleted in (None, b"0-0", "0-0") else None
    first = info["first-entry"][0]
    return _Counters(None if added is None else int(added), int(info["length"]),
                     first.decode() if isinstance(first, bytes) else str(first),
                     None if isinstance(tail, Exception) or len(tail) > TAIL_LIMIT else len(tail))
