"""Dead letters of the PostgreSQL projections (and other checkpointed consumers): table `dead_letters`.

The only module with SQL on that table, but for the archive's reading of its own gaps
(`ledger.archive.known_gaps`, which joins it with the archive). A letter is written in the
transaction that moves its projection's checkpoint past the event; a re-drive marks it
`redriven_at` in the transaction that applies the event; a rebuild's swap marks the letters
it got past.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import class_row, tuple_row

from ..base import DeadLetter

__all__ = ["letters", "mark_redriven", "open_counts", "record", "record_failure", "resolve_passed"]

_COLUMNS = "id, projection, partition, stream_id, event_id, event_type, error, attempts, failed_at, redriven_at"
# Open letters at or below their projection's checkpoint (compared as stream ids, not text).
_RESOLVE = """
UPDATE dead_letters d SET redriven_at = now() FROM projection_checkpoints c
WHERE d.projection = %(name)s AND d.redriven_at IS NULL AND c.projection = d.projection
  AND c.partition = d.partition
  AND (split_part(d.stream_id, '-', 1)::bigint, split_part(d.stream_id, '-', 2)::bigint)
   <= (split_part(c.stream_id, '-', 1)::bigint, split_part(c.stream_id, '-', 2)::bigint)
"""


def record(cur: psycopg.Cursor[Any], projection: str, partition: int, stream_id: str, event_id: str | None,
           event_type: str | None, error: str, attempts: int) -> None:
    """Write a letter, in the caller's transaction (the one moving the checkpoint past the event)."""
    cur.execute("INSERT INTO dead_letters (projection, partition, stream_id, event_id, event_type, error, attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (projection, partition, stream_id, event_id, event_type, error, attempts))


def letters(conn: psycopg.Connection[Any], projection: str | None = None, include_resolved: bool = False,
            ids: Iterable[int] | None = None, exclude: Iterable[str] = ()) -> list[DeadLetter]:
    """Letters of `projection` (None: of every consumer but those in `exclude`), open ones only
    unless `include_resolved`, only `ids` if given."""
    where = ["(%s::text IS NULL OR projection = %s)", "NOT projection = ANY(%s::text[])"]
    args: list[Any] = [projection, projection, list(exclude)]
    if not include_resolved:
        where.append("redriven_at IS NULL")
    if ids is not None:
        where.append("id = ANY(%s)")
        args.append(list(ids))
    with conn.cursor(row_factory=class_row(DeadLetter)) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE {' AND '.join(where)}", args).fetchall()


def open_counts(conn: psycopg.Connection[Any]) -> dict[tuple[str, int], int]:
    """Open letters per (projection, partition)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute("SELECT projection, partition, count(*) FROM dead_letters WHERE redriven_at IS NULL"
                           " GROUP BY projection, partition").fetchall()
    return {(str(name), int(p)): int(n) for name, p, n in rows}


def mark_redriven(cur: psycopg.Cursor[Any], letter_id: int | None) -> bool:
    """Mark an open letter re-driven, in the transaction applying its event; False if it was not open."""
    return cur.execute("UPDATE dead_letters SET redriven_at = now() WHERE id = %s AND redriven_at IS NULL"
                       " RETURNING 1", (letter_id,)).fetchone() is not None


def record_failure(conn: psycopg.Connection[Any], letter_id: int | None, error: str) -> None:
    """A re-drive failed again: keep the new error, count the attempt; the letter stays open."""
    with conn.transaction():
        conn.execute("UPDATE dead_letters SET error = %s, attempts = attempts + 1 WHERE id = %s", (error, letter_id))


def resolve_passed(conn: psycopg.Connection[Any], projection: str) -> None:
    """Mark resolved the open letters of `projection` at or below its checkpoints (of the
    connection's schema): a rebuild applied those events (it fails fast, never skips)."""
    conn.execute(_RESOLVE, {"name": projection})
