"""The archive's month partitions: which month a stream time falls in, its table and range, and
creating a month just before its first rows are written (migration 0005 partitioned
`event_archive` by month of stream time; ledger/archive.py writes and reads through it).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg

__all__ = ["ensure_months", "month_bounds", "month_of", "month_table", "months"]

#: Months known to exist, per connection. A month is remembered when the catalog shows it at
#: the start of a batch, not when the batch creates it: if that batch rolls back, the next one
#: looks for the month, and creates it, again.
_MONTHS: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[tuple[int, int]]] = weakref.WeakKeyDictionary()
_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
_CREATE = "CREATE TABLE IF NOT EXISTS {0} (LIKE event_archive INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
# ATTACH takes a SHARE UPDATE EXCLUSIVE lock on event_archive, which neither reads nor inserts
# wait for (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and stall every reader
# behind any long replay); it builds the month's indexes on the empty table at once.
_ATTACH = "ALTER TABLE event_archive ATTACH PARTITION {0} FOR VALUES FROM ({1}) TO ({2})"  # DDL: no parameters


def month_of(ms: int) -> tuple[int, int]:
    """(year, month) of a stream time in milliseconds, in UTC."""
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.year, t.month


def month_table(year: int, month: int) -> str:
    """The name of the archive's partition holding `year`-`month`: event_archive_y2026m12."""
    return f"event_archive_y{year:04d}m{month:02d}"


def month_bounds(year: int, month: int) -> tuple[int, int]:
    """[first, next month's first) millisecond of `year`-`month`, in UTC: the partition's range."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def ensure_months(conn: psycopg.Connection[Any], stream_ms: Iterable[int]) -> None:
    """Create the archive's partitions for the months of `stream_ms` that lack one, in the
    caller's transaction (schema: the connection's search_path). Nothing after the first time
    a connection sees a month; then one catalog look-up; creating one takes an advisory lock,
    so writers of several ledger partitions reaching a new month create it once."""
    known = _MONTHS.setdefault(conn, set())
    for year, month in sorted({month_of(ms) for ms in stream_ms} - known):
        name = month_table(year, month)
        row = conn.execute(_EXISTS, (name,)).fetchone()
        if row is not None and row[0]:
            known.add((year, month))
            continue
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || %s))", (f".{name}",))
        row = conn.execute(_EXISTS, (name,)).fetchone()  # another writer may have created it meanwhile
        if row is None or not row[0]:
            conn.execute(_CREATE.format(_ident(name)))
            conn.execute(_ATTACH.format(_ident(name), *map(int, month_bounds(year, month))))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def months(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    """The archive's month partitions attached now (name, rows counted), oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass('event_archive') ORDER BY c.relname").fetchall()
    return [(str(name), int((conn.execute(f"SELECT count(*) FROM {_ident(str(name))}").fetchone() or (0,))[0]))
            for (name,) in rows]
