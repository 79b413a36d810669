"""The memory hierarchy of the read model: session (raw) -> summary -> discrete memories.

Levels:
    raw       a session's transcript, from the `sessions` table (None once purged by retention)
    summary   memories of type `summary` (one per processed session)
    discrete  every other memory type: fact, preference, decision, note

A discrete memory's parent is its `metadata.parent_id` (the summary it was extracted
with), else its session; a summary's parent is its session; a session has none. So
memories stored directly by agents (no session) are discrete roots.

`HierarchyQuery` is the flat, filtered query (level, session, agent, time range, limit;
newest first); a `SessionTree` is one session with everything under it. Both are read from
the read model alone (`projections.postgres.hierarchy_reads`: `hierarchy()`, `session_tree()`),
so they are as fresh as the memories projector. This module is pure: the query, its SQL text
and the result's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ledger.errors import SessionNotFound

Level = Literal["raw", "summary", "discrete"]
LEVELS: tuple[Level, ...] = ("raw", "summary", "discrete")
ORDER = "ORDER BY at DESC, session_id NULLS LAST, rank, node_id"  # newest first; the rest breaks ties
DISCRETE_TYPES = ("fact", "preference", "decision", "note")


@dataclass(frozen=True)
class HierarchyQuery:
    """Filters of `query hierarchy`; `org_id` is required."""

    org_id: str
    levels: tuple[Level, ...] = LEVELS
    session_id: str | None = None
    agent_id: str | None = None
    since: datetime | None = None  # on the node's time: ingested_at (raw), created_at (memories)
    until: datetime | None = None
    limit: int = 100

    def sql(self) -> tuple[str, list[Any]]:
        """One UNION ALL over the requested levels (pure: no connection needed)."""
        parts: list[str] = []
        args: list[Any] = []
        for level in LEVELS:
            if level in self.levels:
                part, part_args = self._part(level)
                parts.append(part)
                args += part_args
        if not parts:
            raise ValueError("ask for at least one level: raw, summary or discrete")
        args.append(self.limit)
        return f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS nodes {ORDER} LIMIT %s", args

    def _part(self, level: Level) -> tuple[str, list[Any]]:
        if level == "raw":
            select = ("SELECT 'raw' AS level, 0 AS rank, session_id AS node_id, NULL::text AS parent_id, session_id,"
                      " agent_id, 'transcript' AS memory_type, summary AS content, transcript, status,"
                      " ingested_at AS at, transcript_purged_at FROM sessions")
            time_column = "ingested_at"
        else:
            parent = "session_id" if level == "summary" else "COALESCE(metadata->>'parent_id', session_id)"
            select = (f"SELECT '{level}' AS level, {1 if level == 'summary' else 2} AS rank, memory_id AS node_id,"
                      f" {parent} AS parent_id, session_id, agent_id, memory_type, content, NULL::jsonb AS transcript,"
                      " NULL::text AS status, created_at AS at, NULL::timestamptz AS transcript_purged_at"
                      " FROM memories")
            time_column = "created_at"
        where, args = ["org_id = %s"], list[Any]([self.org_id])
        if level == "summary":
            where.append("memory_type = 'summary'")
        elif level == "discrete":
            where.append("memory_type <> 'summary'")
        for active, clause, value in ((self.session_id is not None, "session_id = %s", self.session_id),
                                      (self.agent_id is not None, "agent_id = %s", self.agent_id),
                                      (self.since is not None, f"{time_column} >= %s", self.since),
                                      (self.until is not None, f"{time_column} < %s", self.until)):
            if active:
                where.append(clause)
                args.append(value)
        # Each level's own first `limit` rows, in the same order: the whole answer is among them,
        # and a level can then walk its time index and stop (migration 0010) where a sort of the
        # union read every row of the org.
        return f"(SELECT * FROM ({select} WHERE {' AND '.join(where)}) AS level {ORDER} LIMIT %s)", [*args, self.limit]


@dataclass
class SessionTree:
    session: dict[str, Any]
    summary: list[dict[str, Any]] = field(default_factory=list)  # normally one
    discrete: list[dict[str, Any]] = field(default_factory=list)


__all__ = ["DISCRETE_TYPES", "LEVELS", "HierarchyQuery", "Level", "SessionNotFound", "SessionTree"]
