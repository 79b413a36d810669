"""The analysts' query API over the PostgreSQL read models. Every query is scoped to one org."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from ledger.errors import LedgerError, Timeout
from ledger.events import stream_id_key
from ledger.log import Receipt

from .history import HistoryEntry, as_of, history
from .postgres.base import connect

Row = dict[str, Any]
COLUMNS = ("org_id, agent_id, memory_id, content, memory_type, tags, importance, metadata, session_id,"
           " created_at, updated_at, expires_at, version, recall_count, last_recalled_at")


class NotFound(LedgerError):
    """No such memory in this org."""

    exit_code = 7


@dataclass(frozen=True)
class MemoryQuery:
    """Filters of `query memories`; `org_id` is required, the rest narrow the result."""

    org_id: str
    agent_id: str | None = None
    tags: tuple[str, ...] = ()
    match: Literal["any", "all"] = "any"
    min_importance: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    memory_type: str | None = None
    session_id: str | None = None
    order: Literal["recent", "importance"] = "recent"
    limit: int = 20

    def sql(self) -> tuple[str, list[Any]]:
        """The SELECT for these filters (pure: no connection needed)."""
        where: list[str] = ["org_id = %s"]
        args: list[Any] = [self.org_id]
        optional: list[tuple[bool, str, Any]] = [
            (self.agent_id is not None, "agent_id = %s", self.agent_id),
            (bool(self.tags), "tags && %s" if self.match == "any" else "tags @> %s", list(self.tags)),
            (self.min_importance is not None, "importance >= %s", self.min_importance),
            (self.since is not None, "updated_at >= %s", self.since),
            (self.until is not None, "updated_at < %s", self.until),
            (bool(self.text), "search @@ websearch_to_tsquery('english', %s)", self.text),
            (self.memory_type is not None, "memory_type = %s", self.memory_type),
            (self.session_id is not None, "session_id = %s", self.session_id),
        ]
        for active, clause, value in optional:
            if active:
                where.append(clause)
                args.append(value)
        order = "updated_at DESC, memory_id" if self.order == "recent" else "importance DESC, updated_at DESC, memory_id"
        args.append(self.limit)
        return f"SELECT {COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s", args


@dataclass
class QueryResult:
    rows: list[Row]
    cache: str = "BYPASS"  # HIT | MISS once the Redis query cache fronts this (see projections.cache)
    meta: dict[str, Any] = field(default_factory=dict)


class MemoryStore:
    """Read access to one namespace's memories (connection per store; not thread-safe)."""

    def __init__(self, conninfo: str, schema: str):
        self.conn = connect(conninfo, schema, autocommit=True)
        self.conn.row_factory = dict_row  # type: ignore[assignment]

    def close(self) -> None:
        self.conn.close()

    def query(self, q: MemoryQuery) -> QueryResult:
        sql, args = q.sql()
        return QueryResult(self.conn.execute(sql, args).fetchall())  # type: ignore[arg-type]

    def get(self, org_id: str, memory_id: str, agent_id: str | None = None) -> Row:
        sql = f"SELECT {COLUMNS} FROM memories WHERE org_id = %s AND memory_id = %s"
        args: list[Any] = [org_id, memory_id]
        if agent_id is not None:
            sql, args = sql + " AND agent_id = %s", args + [agent_id]
        rows = self.conn.execute(sql + " LIMIT 2", args).fetchall()
        if not rows:
            raise NotFound(f"no live memory {memory_id!r} in org {org_id!r} (it may be forgotten: try --history)")
        if len(rows) > 1:
            raise LedgerError(f"memory id {memory_id!r} is used by several agents of {org_id!r}; name the agent")
        return rows[0]  # type: ignore[return-value]

    def history(self, org_id: str, memory_id: str) -> list[HistoryEntry]:
        return history(self.conn, org_id, memory_id)

    def as_of(self, org_id: str, agent_id: str, at: datetime, q: MemoryQuery | None = None) -> list[Row]:
        return as_of(self.conn, org_id, agent_id, at, q)

    def agent_stats(self, org_id: str) -> list[Row]:
        return self.conn.execute(  # type: ignore[return-value]
            "SELECT * FROM agent_stats WHERE org_id = %s ORDER BY agent_id", (org_id,)).fetchall()

    def wait_for(self, receipt: Receipt, timeout: float = 5.0, projection: str = "memories") -> None:
        """Return once `projection` has applied the receipt's position (read-your-writes)."""
        deadline, delay = time.monotonic() + timeout, 0.001
        target = stream_id_key(receipt.stream_id)
        while True:
            row = self.conn.execute(
                "SELECT stream_id FROM projection_checkpoints WHERE projection = %s AND partition = %s",
                (projection, receipt.partition)).fetchone()
            if row is not None and stream_id_key(row["stream_id"]) >= target:  # type: ignore[call-overload]
                return
            if time.monotonic() + delay > deadline:
                raise Timeout(f"{projection} has not reached {receipt.partition}/{receipt.stream_id} within "
                              f"{timeout}s; is a projector running (`memledger up`)?")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def open_store(conninfo: str, schema: str) -> MemoryStore:
    try:
        return MemoryStore(conninfo, schema)
    except psycopg.OperationalError as e:
        from ledger.errors import StoreUnavailable

        raise StoreUnavailable(f"PostgreSQL is unreachable: {e}") from e


__all__: Sequence[str] = ["MemoryQuery", "MemoryStore", "NotFound", "QueryResult", "open_store"]
