"""Pure folds of events into read-model rows: no I/O, no wall clock.

The PostgreSQL projection applies them to batches, `as_of` applies them to archived
history, and property tests apply them to generated histories: one definition of what
each event means for a memory or a session.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ledger import events as ev


@dataclass(frozen=True, slots=True)
class MemoryRow:
    org_id: str
    agent_id: str
    memory_id: str
    content: str
    memory_type: str
    tags: tuple[str, ...]
    importance: float
    metadata: dict[str, Any]
    session_id: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    version: int
    recall_count: int = 0
    last_recalled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    org_id: str
    agent_id: str
    session_id: str
    user_id: str | None
    transcript: tuple[dict[str, Any], ...] | None
    metadata: dict[str, Any]
    message_count: int
    ingested_at: datetime
    status: str  # pending | summarized | failed
    summary: str | None
    memory_ids: tuple[str, ...]
    error: str | None
    transcript_purged_at: datetime | None
    version: int


@dataclass(frozen=True, slots=True)
class MemoryChange:
    """A memory row a batch created, changed or removed: whose it is, and every tag it had
    before or has after (the query cache invalidates exactly these scopes)."""

    org_id: str
    agent_id: str
    tags: frozenset[str]


MEMORY_EVENTS = frozenset({"MemoryStored", "MemoryUpdated", "MemoryTagged", "MemoryUntagged",
                           "MemoryForgotten", "MemoryExpired", "MemoryRecalled"})
SESSION_EVENTS = frozenset({"SessionIngested", "SessionSummarized", "SessionExtractionFailed",
                            "SessionTranscriptPurged", "SessionRetryRequested"})


def _stored(e: ev.Event, d: ev.MemoryStored) -> MemoryRow:
    return MemoryRow(e.org_id, e.agent_id, e.subject_id, d.content, d.memory_type, tuple(d.tags),
                     d.importance, dict(d.metadata), d.session_id, e.occurred_at, e.occurred_at,
                     d.expires_at, e.subject_version)


def _updated(row: MemoryRow, e: ev.Event, d: ev.MemoryUpdated) -> MemoryRow:
    expires = None if d.clear_expiry else (d.expires_at if d.expires_at is not None else row.expires_at)
    return replace(
        row, content=row.content if d.content is None else d.content,
        importance=row.importance if d.importance is None else d.importance,
        metadata=row.metadata if d.metadata is None else dict(d.metadata),
        expires_at=expires, updated_at=e.occurred_at, version=e.subject_version)


def fold_memory(row: MemoryRow | None, e: ev.Event) -> MemoryRow | None:
    """The memory after event `e`; None once it is gone (forgotten, expired, never stored)."""
    d = e.data
    if isinstance(d, ev.MemoryStored):
        return _stored(e, d)
    if row is None:
        return None  # an event for a memory this read model no longer holds
    if isinstance(d, ev.MemoryUpdated):
        return _updated(row, e, d)
    if isinstance(d, ev.MemoryTagged):
        tags = row.tags + tuple(t for t in d.tags if t not in row.tags)
        return replace(row, tags=tags, updated_at=e.occurred_at, version=e.subject_version)
    if isinstance(d, ev.MemoryUntagged):
        tags = tuple(t for t in row.tags if t not in d.tags)
        return replace(row, tags=tags, updated_at=e.occurred_at, version=e.subject_version)
    if isinstance(d, ev.MemoryRecalled):
        return replace(row, recall_count=row.recall_count + 1, last_recalled_at=e.occurred_at)
    if isinstance(d, (ev.MemoryForgotten, ev.MemoryExpired)):
        return None
    return row


def fold_session(row: SessionRow | None, e: ev.Event) -> SessionRow | None:
    """The session after event `e`."""
    d = e.data
    if isinstance(d, ev.SessionIngested):
        transcript = tuple(m.model_dump(mode="json") for m in d.transcript)
        return SessionRow(e.org_id, e.agent_id, e.subject_id, d.user_id, transcript, dict(d.metadata),
                          len(transcript), e.occurred_at, "pending", None, (), None, None, e.subject_version)
    if row is None:
        return None
    if isinstance(d, ev.SessionSummarized):
        return replace(row, status="summarized", summary=d.summary, memory_ids=tuple(d.memory_ids),
                       error=None, version=e.subject_version)
    if isinstance(d, ev.SessionExtractionFailed):
        return replace(row, status="failed", error=d.error, version=e.subject_version)
    if isinstance(d, ev.SessionTranscriptPurged):
        return replace(row, transcript=None, transcript_purged_at=e.occurred_at, version=e.subject_version)
    if isinstance(d, ev.SessionRetryRequested):
        # Pending again; the error stays visible until the retry succeeds (or fails anew).
        return replace(row, status="pending", version=e.subject_version)
    return row


# Which agent counter each event type increments.
_COUNTED = {"MemoryStored": "stored", "MemoryUpdated": "updated", "MemoryTagged": "updated",
            "MemoryUntagged": "updated", "MemoryForgotten": "forgotten", "MemoryExpired": "expired",
            "MemoryRecalled": "recalls", "SessionIngested": "sessions"}


@dataclass
class AgentDelta:
    """Counter changes for one agent within a batch (added onto the stored row)."""

    live_memories: int = 0
    stored: int = 0
    updated: int = 0
    forgotten: int = 0
    expired: int = 0
    recalls: int = 0
    sessions: int = 0
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None

    def count(self, e: ev.Event, was_live: bool, is_live: bool) -> None:
        kind = _COUNTED.get(e.type)
        if kind is not None:
            setattr(self, kind, getattr(self, kind) + 1)
        self.live_memories += int(is_live) - int(was_live)
        if self.first_event_at is None or e.occurred_at < self.first_event_at:
            self.first_event_at = e.occurred_at
        if self.last_event_at is None or e.occurred_at > self.last_event_at:
            self.last_event_at = e.occurred_at
