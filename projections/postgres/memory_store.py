"""`MemoryStore`: the analysts' queries (`projections.query`) run on the PostgreSQL read models.

One connection per store, in autocommit mode: each query sees the latest commit of the
projectors. Input is checked before any SQL is sent (`InvalidQuery` names the field); a
driver error that still gets through is translated by `ledger.postgres.query_errors`. History
and point-in-time reads come from the event archive (`ledger.archive`), folded by
`projections.history`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from ledger import archive_lookups
from ledger.errors import InvalidQuery, NotFound
from ledger.eventlog import Receipt
from ledger.postgres import connect, query_errors, translated

from ..checkpoints import wait_applied
from ..history import HistoryEntry, fold_as_of, history_entries
from ..query import COLUMNS, LIVE, Clock, MemoryQuery, QueryResult, Row, check_ids, check_text, check_time, utc_now
from . import checkpoint_table as checkpoints

__all__ = ["MemoryStore", "open_store"]


class MemoryStore:
    """Read access to one namespace's memories (connection per store; not thread-safe).

    Parameters:
        clock: the time queries judge expiry by (default: the UTC wall clock).
    """

    def __init__(self, conninfo: str, schema: str, clock: Clock = utc_now):
        # raises StoreUnavailable if unreachable; planned per query (ledger.postgres.QUERY_PLANNING)
        self.conn = connect(conninfo, schema, autocommit=True, queries=True)
        self.conn.row_factory = dict_row
        self.clock = clock

    def close(self) -> None:
        self.conn.close()

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        with query_errors():
            return self.conn.execute(sql, args).fetchall()

    def query(self, q: MemoryQuery) -> QueryResult:
        return QueryResult(self._fetch(*q.sql(self.clock())))

    def get(self, org_id: str, memory_id: str, agent_id: str | None = None) -> Row:
        """One memory that is not past its expiry (nor forgotten)."""
        check_ids(org_id=org_id, memory_id=memory_id, agent_id=agent_id)
        sql = f"SELECT {COLUMNS} FROM memories WHERE org_id = %s AND memory_id = %s AND {LIVE}"
        args: list[Any] = [org_id, memory_id, self.clock()]
        if agent_id is not None:
            sql, args = sql + " AND agent_id = %s", args + [agent_id]
        rows = self._fetch(sql + " LIMIT 2", args)
        if not rows:
            raise NotFound(f"no live memory {memory_id!r} in org {org_id!r} "
                           "(it may be forgotten or expired: try --history)")
        if len(rows) > 1:
            raise InvalidQuery(f"memory id {memory_id!r} is used by several agents of {org_id!r}; name the agent")
        return rows[0]

    def history(self, org_id: str, memory_id: str) -> list[HistoryEntry]:
        """Every archived event of one memory, oldest first."""
        check_ids(org_id=org_id, memory_id=memory_id)
        with query_errors():
            return history_entries(archive_lookups.subject_history(self.conn, org_id, memory_id))

    def as_of(self, org_id: str, agent_id: str, at: datetime, q: MemoryQuery | None = None) -> list[Row]:
        """The agent's memories at `at` (naive: UTC), not past their expiry then."""
        check_ids(org_id=org_id, agent_id=agent_id)
        at = check_time("at", at)
        with query_errors():
            return fold_as_of(archive_lookups.agent_history(self.conn, org_id, agent_id, at), at, q)

    def agent_stats(self, org_id: str) -> list[Row]:
        """Per-agent counters; a memory past its expiry counts as expired, even before its event arrives."""
        check_text("org_id", org_id)
        rows = self._fetch(
            "SELECT s.*, (SELECT count(*) FROM memories m WHERE m.org_id = s.org_id AND m.agent_id = s.agent_id"
            " AND m.expires_at <= %s) AS due FROM agent_stats s WHERE s.org_id = %s ORDER BY s.agent_id",
            [self.clock(), org_id])
        for row in rows:
            due = row.pop("due")
            row["live_memories"] -= due
            row["expired"] += due
        return rows

    def tag_counts(self, org_id: str, agent_id: str | None = None, limit: int = 100) -> list[Row]:
        """Live memories per tag (past-expiry ones excluded), most used first, at most `limit` tags."""
        check_ids(org_id=org_id, agent_id=agent_id)
        sql, args = f"SELECT t.tag, count(*)::int AS memories FROM memories, unnest(tags) AS t(tag) " \
                    f"WHERE org_id = %s AND {LIVE}", [org_id, self.clock()]
        if agent_id is not None:
            sql, args = sql + " AND agent_id = %s", args + [agent_id]
        return self._fetch(sql + " GROUP BY t.tag ORDER BY memories DESC, t.tag LIMIT %s", args + [limit])

    def hierarchy_counts(self, org_id: str, agent_id: str | None = None) -> Row:
        """The hierarchy in numbers: sessions by status (and their messages), summaries, memories
        extracted from sessions, and memories stored directly."""
        check_ids(org_id=org_id, agent_id=agent_id)
        scope, args = ("org_id = %s", [org_id]) if agent_id is None else \
            ("org_id = %s AND agent_id = %s", [org_id, agent_id])
        sessions = self._fetch(f"SELECT status, count(*)::int AS n, coalesce(sum(message_count), 0)::int AS messages"
                               f" FROM sessions WHERE {scope} GROUP BY status", args)
        [memories] = self._fetch(
            "SELECT count(*) FILTER (WHERE memory_type = 'summary')::int AS summaries,"
            " count(*) FILTER (WHERE memory_type <> 'summary' AND session_id IS NOT NULL)::int AS extracted,"
            f" count(*) FILTER (WHERE session_id IS NULL)::int AS direct FROM memories WHERE {scope} AND {LIVE}",
            args + [self.clock()])
        return {"sessions": {r["status"]: r["n"] for r in sessions},
                "messages": sum(r["messages"] for r in sessions), **memories}

    def wait_for(self, receipt: Receipt, timeout: float = 5.0, projection: str = "memories") -> None:
        """Return once `projection` (one checkpointed in PostgreSQL) has applied the receipt's position."""
        def reached() -> str | None:
            with translated():
                return checkpoints.get(self.conn, projection, receipt.partition)

        wait_applied(reached, receipt, timeout, projection)


def open_store(conninfo: str, schema: str, clock: Clock = utc_now) -> MemoryStore:
    return MemoryStore(conninfo, schema, clock)
