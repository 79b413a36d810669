"""A memory's history, and what an agent knew at a time, from its archived events (pure).

The events come from the event archive (`projections.postgres.memory_store.MemoryStore` reads
them through `ledger.archive`, which upcasts them as every read path must); this module only
shapes and folds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.events import Event, RecordedEvent

from .fold import MEMORY_EVENTS, MemoryRow, fold_memory

if TYPE_CHECKING:
    from .query import MemoryQuery

__all__ = ["HistoryEntry", "fold_as_of", "history_entries"]


@dataclass(frozen=True)
class HistoryEntry:
    partition: int
    stream_id: str
    event: Event


def history_entries(events: Iterable[RecordedEvent]) -> list[HistoryEntry]:
    """Archived events as history entries, in the order given (oldest first)."""
    return [HistoryEntry(r.position.partition, r.position.stream_id, r.event) for r in events]


def fold_as_of(events: Iterable[RecordedEvent], at: datetime, q: MemoryQuery | None = None) -> list[dict[str, Any]]:
    """An agent's memories as they stood at `at` (timezone-aware), folded from its events up to then
    (oldest first), filtered by `q` if given.

    A memory past its `expires_at` at `at` is left out, whether or not its MemoryExpired
    event was written by then (the expiry job runs some time after).
    """
    rows: dict[str, MemoryRow | None] = {}
    for recorded in events:
        event = recorded.event
        if event.type in MEMORY_EVENTS:
            rows[event.subject_id] = fold_memory(rows.get(event.subject_id), event)
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
