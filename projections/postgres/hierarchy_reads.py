"""The memory hierarchy read from PostgreSQL: the rows a `HierarchyQuery` selects, and one
session's tree (`projections.hierarchy` holds the query, its SQL text and the result's shape).

Both read the `sessions` and `memories` tables of the read model only, on the caller's
connection, whatever row factory it has.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from ledger.errors import LedgerError, SessionNotFound

from ..hierarchy import HierarchyQuery, SessionTree

__all__ = ["hierarchy", "session_tree"]


def hierarchy(conn: psycopg.Connection[Any], q: HierarchyQuery) -> list[dict[str, Any]]:
    """Nodes of the hierarchy matching `q`, newest first (raw before summary before discrete)."""
    sql, args = q.sql()
    return conn.cursor(row_factory=dict_row).execute(sql, args).fetchall()


def session_tree(conn: psycopg.Connection[Any], org_id: str, session_id: str,
                 agent_id: str | None = None) -> SessionTree:
    """One session: its row (transcript, status, summary, error) and the memories under it."""
    cur = conn.cursor(row_factory=dict_row)
    sql, args = "SELECT * FROM sessions WHERE org_id = %s AND session_id = %s", [org_id, session_id]
    if agent_id is not None:
        sql, args = sql + " AND agent_id = %s", args + [agent_id]
    rows = cur.execute(sql + " LIMIT 2", args).fetchall()
    if not rows:
        raise SessionNotFound(f"no session {session_id!r} in org {org_id!r} (is the memories projector running?)")
    if len(rows) > 1:
        raise LedgerError(f"session id {session_id!r} is used by several agents of {org_id!r}; name the agent")
    session = rows[0]
    memories = cur.execute(
        "SELECT memory_id, memory_type, content, tags, importance, metadata, created_at, version FROM memories"
        " WHERE org_id = %s AND agent_id = %s AND session_id = %s"
        " ORDER BY CASE WHEN metadata->>'index' ~ '^[0-9]{1,9}$' THEN (metadata->>'index')::int END NULLS LAST,"
        " created_at, memory_id",
        (org_id, session["agent_id"], session_id)).fetchall()
    return SessionTree(session, [m for m in memories if m["memory_type"] == "summary"],
                       [m for m in memories if m["memory_type"] != "summary"])
