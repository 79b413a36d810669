"""The memories read model: current memories, tag counts, per-agent statistics, sessions.

A batch is folded in memory (see `projections.fold`) and written set-based: rows that
changed go through a COPY into a staging table and one upsert; counters are added as
deltas. The checkpoint moves in the same transaction (see `PostgresProjection.apply`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, Self, TypeVar

import orjson
import psycopg

from ledger.events import Event, RecordedEvent
from ledger.settings import Settings

from ..fold import (
    MEMORY_EVENTS,
    SESSION_EVENTS,
    AgentDelta,
    MemoryChange,
    MemoryRow,
    SessionRow,
    fold_memory,
    fold_session,
)
from .base import PostgresProjection

Key = tuple[str, str, str]  # org, agent, subject
Row = TypeVar("Row", MemoryRow, SessionRow)
MEMORY_COLUMNS = [f.name for f in fields(MemoryRow)]
SESSION_COLUMNS = [f.name for f in fields(SessionRow)]
_ARRAYS = {"tags", "memory_ids"}


def _insert(table: str, columns: list[str], key: list[str] | None = None) -> str:
    # Rows travel as one JSON array (orjson encodes the row dataclasses natively) and
    # PostgreSQL turns it into records: far cheaper than adapting each value in Python.
    cols = ", ".join(columns)
    sql = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, %s::json)"
    if key is None:
        return sql
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return f"{sql} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"


def _update(table: str, columns: list[str], key: list[str]) -> str:
    # Rows this batch loaded exist (read under the checkpoint's row lock): a plain UPDATE.
    # An upsert would also build the proposed insert row first, computing the full-text
    # column for it before finding the conflict.
    sets = ", ".join(f"{c} = r.{c}" for c in columns if c not in key)
    match = " AND ".join(f"t.{c} = r.{c}" for c in key)
    return (f"UPDATE {table} AS t SET {sets} FROM json_populate_recordset(NULL::{table}, %s::json) AS r"
            f" WHERE {match}")


class MemoriesProjection(PostgresProjection):
    name = "memories"
    version = 1
    tables = ("memories", "tag_stats", "agent_stats", "sessions")
    durable_commit = False  # derived data, re-applied from the ledger after a database crash
    # A subject's rows live in its partition; tag_stats rows are shared by an org's partitions,
    # but only as deltas added under row locks taken in one sorted order, so two handles wait
    # for each other's commits and never deadlock.
    parallel_partitions = True

    @classmethod
    def open(cls, settings: Settings, target: str | None = None) -> Self:
        projection = super().open(settings, target)
        if target in (None, settings.db_schema):  # the live tables: their commits invalidate the query cache
            from ..redis.cache import attach_query_cache

            attach_query_cache(projection, settings, settings.db_schema)
        return projection

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> tuple[MemoryChange, ...]:
        """Fold and write the batch; the memory rows it changed (what the query cache's commit
        hook invalidates: projections.redis.cache)."""
        memory = [r.event for r in events if r.event.type in MEMORY_EVENTS]
        session = [r.event for r in events if r.event.type in SESSION_EVENTS]
        deltas: dict[tuple[str, str], AgentDelta] = defaultdict(AgentDelta)
        changes = self._write_memories(cur, memory, deltas) if memory else ()
        if session:
            self._write_sessions(cur, session, deltas)
        self._write_agent_stats(cur, deltas)
        return changes

    # -- memories ----------------------------------------------------------------------

    def _write_memories(self, cur: psycopg.Cursor, events: list[Event],
                        deltas: dict[tuple[str, str], AgentDelta]) -> tuple[MemoryChange, ...]:
        before = _load(cur, "memories", MEMORY_COLUMNS, "memory_id", _needs_loading(events, "MemoryStored"),
                       MemoryRow)
        after = _fold_all(events, before, fold_memory, deltas, counts_live=True)
        changed = {k: v for k, v in after.items() if v != before.get(k)}
        # A memory first stored in this batch has no row yet (the append script refuses a
        # second store of an id): a plain insert, cheaper than the upsert the others need.
        _write_rows(cur, "memories", MEMORY_COLUMNS, None,
                    [v for k, v in changed.items() if v is not None and k not in before])
        updated = [v for k, v in changed.items() if v is not None and k in before]
        if updated:
            cur.execute(_update("memories", MEMORY_COLUMNS, ["org_id", "agent_id", "memory_id"]),
                        (orjson.dumps(updated).decode(),))
        _delete(cur, [k for k, v in changed.items() if v is None and k in before])
        _write_tag_stats(cur, _tag_deltas(before, changed))
        if not self.commit_hooks:  # only the query cache reads them; rebuilds have no hooks
            return ()
        return tuple(MemoryChange(k[0], k[1], frozenset(before[k].tags if k in before else ())
                                  | frozenset(v.tags if v else ())) for k, v in changed.items())

    # -- sessions ----------------------------------------------------------------------

    def _write_sessions(self, cur: psycopg.Cursor, events: list[Event],
                        deltas: dict[tuple[str, str], AgentDelta]) -> None:
        before = _load(cur, "sessions", SESSION_COLUMNS, "session_id", _needs_loading(events, "SessionIngested"),
                       SessionRow)
        after = _fold_all(events, before, fold_session, deltas, counts_live=False)
        rows = [v for k, v in after.items() if v is not None and v != before.get(k)]
        _write_rows(cur, "sessions", SESSION_COLUMNS, ["org_id", "agent_id", "session_id"], rows)

    # -- agent statistics --------------------------------------------------------------

    def _write_agent_stats(self, cur: psycopg.Cursor, deltas: dict[tuple[str, str], AgentDelta]) -> None:
        if not deltas:
            return
        rows = [(org, agent, *(getattr(d, c) for c in _COUNTERS), d.first_event_at, d.last_event_at)
                for (org, agent), d in sorted(deltas.items())]
        cur.execute(_AGENT_STATS, _columns(rows))


def _fold_all(events: list[Event], before: dict[Key, Row], fold: Callable[[Row | None, Event], Row | None],
              deltas: dict[tuple[str, str], AgentDelta], counts_live: bool) -> dict[Key, Row | None]:
    """Every subject's row after the batch, starting from `before`; agent counters on the way."""
    after: dict[Key, Row | None] = dict(before)
    for e in events:
        key = (e.org_id, e.agent_id, e.subject_id)
        was = after.get(key)
        after[key] = fold(was, e)
        deltas[(e.org_id, e.agent_id)].count(e, counts_live and was is not None, counts_live and after[key] is not None)
    return after


def _needs_loading(events: list[Event], creating_type: str) -> set[Key]:
    """Subjects whose current row must be read: all but those created in this batch."""
    first: dict[Key, str] = {}
    for e in events:
        first.setdefault((e.org_id, e.agent_id, e.subject_id), e.type)
    return {k for k, t in first.items() if t != creating_type}


def _load(cur: psycopg.Cursor, table: str, columns: list[str], id_column: str, keys: set[Key],
          row_type: Any) -> dict[Key, Any]:
    if not keys:
        return {}
    orgs, agents, ids = (list(x) for x in zip(*keys))
    cur.execute(
        f"SELECT {', '.join(columns)} FROM {table} WHERE (org_id, agent_id, {id_column}) IN "
        "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))", (orgs, agents, ids))
    out = {}
    for values in cur.fetchall():
        row = dict(zip(columns, values))
        for c in _ARRAYS & row.keys():
            row[c] = tuple(row[c] or ())
        if row.get("transcript") is not None:
            row["transcript"] = tuple(row["transcript"])
        out[(row["org_id"], row["agent_id"], row[id_column])] = row_type(**row)
    return out


def _write_rows(cur: psycopg.Cursor, table: str, columns: list[str], key: list[str] | None, rows: list[Any]) -> None:
    """Insert `rows` (upsert on `key` when given)."""
    if rows:
        cur.execute(_insert(table, columns, key), (orjson.dumps(rows).decode(),))


def _delete(cur: psycopg.Cursor, keys: list[Key]) -> None:
    if keys:
        orgs, agents, ids = (list(x) for x in zip(*keys))
        cur.execute("DELETE FROM memories WHERE (org_id, agent_id, memory_id) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))", (orgs, agents, ids))


def _tag_deltas(before: dict[Key, MemoryRow], changed: dict[Key, MemoryRow | None]) -> Counter[tuple[str, str]]:
    delta: Counter[tuple[str, str]] = Counter()
    for key, row in changed.items():
        old = before.get(key)
        for tag in old.tags if old else ():
            delta[(key[0], tag)] -= 1
        for tag in row.tags if row else ():
            delta[(key[0], tag)] += 1
    return delta


def _write_tag_stats(cur: psycopg.Cursor, delta: Counter[tuple[str, str]]) -> None:
    rows = sorted((org, tag, n) for (org, tag), n in delta.items() if n)
    if rows:
        cur.execute(_TAG_STATS, _columns(rows))


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays an `unnest(...)` upsert takes."""
    return [list(column) for column in zip(*rows)]


# Counters are added as deltas, all rows of a table in one statement (arrays, unnested in the
# order given: sorted by key, so two transactions lock shared rows in one order). One
# statement instead of one per row: executemany cost about 60 µs of Python per row.
_COUNTERS = ("live_memories", "stored", "updated", "forgotten", "expired", "recalls", "sessions")
_TAG_STATS = (
    "INSERT INTO tag_stats (org_id, tag, memories) SELECT * FROM unnest(%s::text[], %s::text[], %s::int[])"
    " ON CONFLICT (org_id, tag) DO UPDATE SET memories = tag_stats.memories + EXCLUDED.memories")
_AGENT_STATS = (
    f"INSERT INTO agent_stats (org_id, agent_id, {', '.join(_COUNTERS)}, first_event_at, last_event_at)"
    f" SELECT * FROM unnest(%s::text[], %s::text[], {', '.join(['%s::int[]'] * len(_COUNTERS))},"
    " %s::timestamptz[], %s::timestamptz[])"
    f" ON CONFLICT (org_id, agent_id) DO UPDATE SET {', '.join(f'{c} = agent_stats.{c} + EXCLUDED.{c}' for c in _COUNTERS)},"
    " first_event_at = LEAST(agent_stats.first_event_at, EXCLUDED.first_event_at),"
    " last_event_at = GREATEST(agent_stats.last_event_at, EXCLUDED.last_event_at)")
