"""What the workers read from PostgreSQL: the sessions and memories read models (what is due,
what failed, who owns a session) and, once the stream is trimmed, the event archive.

The only module of `workers` with SQL or a PostgreSQL connection of its own; connections
come from `ledger.postgres` and every read runs under its `translated()`, so a lost server
is `StoreUnavailable` and a never migrated namespace names `memledger migrate`. The SQL on
the event archive itself is `ledger.archive`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ledger import events as ev
from ledger.archive_lookups import event_by_id
from ledger.errors import StoreUnavailable
from ledger.postgres import connect, translated
from ledger.settings import Settings

__all__ = ["PAGE", "ArchiveReader", "due_memories", "old_transcripts", "session_owners", "sessions_with_status"]

#: Rows per page of a maintenance round's keyset scan.
PAGE = 500

Row = tuple[Any, ...]


class ArchiveReader:
    """Per-thread PostgreSQL access for the worker: the event archive, once the stream is trimmed."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._local = threading.local()
        self._opened: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = connect(self.settings, autocommit=True)
            with self._lock:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def archived(self, event_id: str, org_id: str, agent_id: str) -> ev.Event | None:
        """Event `event_id` if it is one of `org_id`/`agent_id`'s: another org's reads as missing."""
        conn = self._conn()
        try:
            with translated("PostgreSQL (reading the event archive)"):
                return event_by_id(conn, event_id, org_id, agent_id)
        except StoreUnavailable:
            conn.close()  # reconnect on the next call; this one is retried by dramatiq
            raise


    def conversation(self, org_id: str, agent_id: str, session_id: str, through: int) -> list[ev.Message]:
        """Messages 1..`through` of a conversation, as a transcript (from its read model)."""
        from projections.postgres.conversations import messages_through

        conn = self._conn()
        try:
            rows = messages_through(conn, org_id, agent_id, session_id, through)
        except StoreUnavailable:
            conn.close()
            raise
        return [ev.Message(role=r.role, content=r.content, at=r.at) for r in rows]


def _rows(conn: psycopg.Connection[Any], what: str, sql: str, args: tuple[Any, ...]) -> list[Row]:
    with translated(f"PostgreSQL ({what})"), conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(sql, args).fetchall()


def session_owners(conn: psycopg.Connection[Any], org_id: str, session_id: str,
                   agent_id: str | None = None) -> list[tuple[str, str]]:
    """(agent id, status) of up to two sessions with this id in `org_id` (of `agent_id` when given)."""
    sql, args = "SELECT agent_id, status FROM sessions WHERE org_id = %s AND session_id = %s", [org_id, session_id]
    if agent_id is not None:
        sql, args = sql + " AND agent_id = %s", [*args, agent_id]
    return [(str(a), str(s)) for a, s in _rows(conn, "reading sessions", sql + " LIMIT 2", tuple(args))]


def sessions_with_status(conn: psycopg.Connection[Any], status: str, newest_first: bool,
                         limit: int, org_id: str | None = None) -> tuple[int, list[Row]]:
    """How many sessions (of `org_id` when given) have `status`, and the first `limit` of them by
    ingest time: (org_id, agent_id, session_id, ingested_at, error) each."""
    order = "DESC" if newest_first else "ASC"
    where = "status = %s AND (%s::text IS NULL OR org_id = %s)"
    count = _rows(conn, "counting sessions", f"SELECT count(*) FROM sessions WHERE {where}", (status, org_id, org_id))
    rows = _rows(conn, "reading sessions",
                 f"SELECT org_id, agent_id, session_id, ingested_at, error FROM sessions WHERE {where}"
                 f" ORDER BY ingested_at {order}, org_id, agent_id, session_id LIMIT %s",
                 (status, org_id, org_id, limit))
    return int(count[0][0]) if count else 0, rows


_DUE_MEMORIES = """
SELECT expires_at, org_id, agent_id, memory_id, version FROM memories
WHERE expires_at <= %s AND (%s::text IS NULL OR org_id = %s)
  AND (expires_at, org_id, agent_id, memory_id) > (%s, %s, %s, %s)
ORDER BY expires_at, org_id, agent_id, memory_id LIMIT %s
"""

_OLD_TRANSCRIPTS = """
SELECT ingested_at, org_id, agent_id, session_id FROM sessions
WHERE transcript IS NOT NULL AND ingested_at < %s AND (%s::text IS NULL OR org_id = %s)
  AND (ingested_at, org_id, agent_id, session_id) > (%s, %s, %s, %s)
ORDER BY ingested_at, org_id, agent_id, session_id LIMIT %s
"""


def _pages(conn: psycopg.Connection[Any], what: str, sql: str, args: tuple[Any, ...]) -> Iterator[list[Row]]:
    """Keyset pagination: `sql` takes (*args, *last key, limit) and orders by its first four columns."""
    last: Row = (datetime(1970, 1, 1, tzinfo=timezone.utc), "", "", "")
    while True:
        rows = _rows(conn, what, sql, (*args, *last, PAGE))
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][:4])


def due_memories(conn: psycopg.Connection[Any], now: datetime, org_id: str | None = None) -> Iterator[list[Row]]:
    """Pages of memories (of `org_id` when given) whose `expires_at` is at or before `now`:
    (expires_at, org_id, agent_id, memory_id, version) each, in expiry order."""
    return _pages(conn, "reading memories due to expire", _DUE_MEMORIES, (now, org_id, org_id))


def old_transcripts(conn: psycopg.Connection[Any], before: datetime,
                    org_id: str | None = None) -> Iterator[list[Row]]:
    """Pages of sessions (of `org_id` when given) ingested before `before` that still hold their raw transcript:
    (ingested_at, org_id, agent_id, session_id) each, in ingest order."""
    return _pages(conn, "reading sessions past retention", _OLD_TRANSCRIPTS, (before, org_id, org_id))
