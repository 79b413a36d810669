"""Checkpoints in PostgreSQL: rows of `projection_checkpoints` (projection, partition, stream id).

The only module with SQL on that table. A projection moves its checkpoint in the same
transaction as its rows (`advance`, the transaction's first statement); everything else
reads, locks or, in a rebuild's swap, replaces them.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ledger.postgres import translated

from ..base import FencedOut
from ..checkpoints import START

__all__ = ["PostgresCheckpoints", "advance", "all_checkpoints", "lock", "lock_table", "read", "replace"]

# The compare-and-set, one statement per case. Only a batch read from the start may create
# the row: a missing row under any other `after` means the commit that created it was lost
# (an asynchronous commit, then a PostgreSQL crash), and creating it again at `to` would skip
# the lost batches for good, so that is a fence as well.
_CREATE = """
INSERT INTO projection_checkpoints (projection, partition, stream_id) VALUES (%(name)s, %(partition)s, %(to)s)
ON CONFLICT (projection, partition) DO UPDATE SET stream_id = EXCLUDED.stream_id, updated_at = now()
WHERE projection_checkpoints.stream_id = %(after)s
RETURNING 1
"""
_MOVE = """
UPDATE projection_checkpoints SET stream_id = %(to)s, updated_at = now()
WHERE projection = %(name)s AND partition = %(partition)s AND stream_id = %(after)s
RETURNING 1
"""


def _table(schema: str | None) -> str:
    """The table, qualified by `schema` (else found by the connection's search_path)."""
    return "projection_checkpoints" if schema is None else '"' + schema.replace('"', '""') + '".projection_checkpoints'


def advance(cur: psycopg.Cursor[Any], name: str, partition: int, after: str, to: str) -> None:
    """Move `name`'s checkpoint of `partition` from `after` to `to`, or raise FencedOut.

    Run it first in the batch's transaction: it locks the checkpoint row (or, for a row
    being created, its key), so a second projector holding a stale lease waits here, then
    finds `after` moved (or the row taken) and backs off.
    """
    args = {"name": name, "partition": partition, "after": after, "to": to}
    if cur.execute(_CREATE if after == START else _MOVE, args).fetchone() is None:
        raise FencedOut(f"{name} partition {partition} is not at {after} (moved past it, or the "
                        "commit that stored it was lost)")


def read(conn: psycopg.Connection[Any], name: str, schema: str | None = None) -> dict[int, str]:
    """`name`'s checkpoints (in `schema`, else the connection's), in the caller's transaction."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(f"SELECT partition, stream_id FROM {_table(schema)} WHERE projection = %s",
                           (name,)).fetchall()
    return {int(p): str(s) for p, s in rows}


def get(conn: psycopg.Connection[Any], name: str, partition: int) -> str | None:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT stream_id FROM projection_checkpoints WHERE projection = %s AND partition = %s",
                          (name, partition)).fetchone()
    return None if row is None else str(row[0])


def lock(cur: psycopg.Cursor[Any], name: str, partition: int) -> str:
    """Lock `name`'s checkpoint row of `partition` until the transaction ends, which holds
    that partition's projector off (its next batch starts by writing the row); the
    checkpoint (START if there is none)."""
    row = cur.execute("SELECT stream_id FROM projection_checkpoints WHERE projection = %s AND partition = %s"
                      " FOR UPDATE", (name, partition)).fetchone()
    return START if row is None else str(row[0])


def lock_table(conn: psycopg.Connection[Any], schema: str, mode: str) -> None:
    """LOCK the whole table of `schema` in `mode` (SHARE: checkpoint writers wait, readers pass;
    EXCLUSIVE: the same, for a swap)."""
    conn.execute(f"LOCK TABLE {_table(schema)} IN {mode} MODE")


def all_checkpoints(conn: psycopg.Connection[Any]) -> dict[str, dict[int, str]]:
    """Every consumer's checkpoints, projections and others (the session enqueuer)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute("SELECT projection, partition, stream_id FROM projection_checkpoints").fetchall()
    found: dict[str, dict[int, str]] = {}
    for name, partition, stream_id in rows:
        found.setdefault(str(name), {})[int(partition)] = str(stream_id)
    return found


def replace(conn: psycopg.Connection[Any], name: str, schema: str, source: str) -> dict[int, str]:
    """Replace `name`'s checkpoints in `schema` by those in schema `source` (a rebuild's swap,
    in its transaction); the checkpoints now in `schema`."""
    conn.execute(f"DELETE FROM {_table(schema)} WHERE projection = %s", (name,))
    conn.execute(f"INSERT INTO {_table(schema)} (projection, partition, stream_id)"
                 f" SELECT projection, partition, stream_id FROM {_table(source)} WHERE projection = %s", (name,))
    return read(conn, name, schema)


class PostgresCheckpoints:
    """CheckpointStore of one projection on one connection (each read in a transaction of its own)."""

    def __init__(self, conn: psycopg.Connection[Any], projection: str):
        self.conn, self.projection = conn, projection

    def load(self) -> dict[int, str]:
        with translated(f"PostgreSQL (reading the {self.projection} checkpoints)"), self.conn.transaction():
            return read(self.conn, self.projection)

    def get(self, partition: int) -> str | None:
        with translated(f"PostgreSQL (reading a {self.projection} checkpoint)"), self.conn.transaction():
            return get(self.conn, self.projection, partition)
