"""History from the event archive: a memory's events, and what an agent knew at a time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from ledger import archive
from ledger.events import Event, RecordedEvent

from .fold import MEMORY_EVENTS, MemoryRow, fold_memory

if TYPE_CHECKING:
    from .query import MemoryQuery


@dataclass(frozen=True)
class HistoryEntry:
    partition: int
    stream_id: str
    event: Event


def _entries(events: list[RecordedEvent]) -> list[HistoryEntry]:
    # Bodies are archived as written; the archive upcasts them, as every read path must.
    return [HistoryEntry(r.position.partition, r.position.stream_id, r.event) for r in events]


def history(conn: psycopg.Connection, org_id: str, memory_id: str) -> list[HistoryEntry]:
    """Every archived event of one memory, oldest first."""
    return _entries(archive.subject_history(conn, org_id, memory_id))


def as_of(conn: psycopg.Connection, org_id: str, agent_id: str, at: datetime,
          q: MemoryQuery | None = None) -> list[dict[str, Any]]:
    """The agent's memories as they stood at `at` (timezone-aware), by folding archived history up to then.

    A memory past its `expires_at` at `at` is left out, whether or not its MemoryExpired
    event was written by then (the expiry job runs some time after).
    """
    entries = _entries(archive.agent_history(conn, org_id, agent_id, at))
    rows: dict[str, MemoryRow | None] = {}
    for entry in entries:
        if entry.event.type in MEMORY_EVENTS:
            rows[entry.event.subject_id] = fold_memory(rows.get(entry.event.subject_id), entry.event)
    live = [asdict(r) for r in rows.values() if r is not None and (r.expires_at is None or r.expires_at > at)]
    return _filter(live, q) if q is not None else sorted(live, key=lambda r: r["updated_at"], reverse=True)


def _filter(rows: list[dict[str, Any]], q: MemoryQuery) -> list[dict[str, Any]]:
    def keep(r: dict[str, Any]) -> bool:
        tags = set(r["tags"])
        return bool((not q.tags or (tags & set(q.tags) if q.match == "any" else tags >= set(q.tags)))
                and (q.min_importance is None or r["importance"] >= q.min_importance)
                and (q.text is None or all(w.lower() in r["content"].lower() for w in q.text.split())))

    key = "updated_at" if q.order == "recent" else "importance"
    return sorted(filter(keep, rows), key=lambda r: r[key], reverse=True)[: q.limit]
