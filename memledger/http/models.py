"""Request and response bodies of the HTTP API, as pydantic models (so /openapi.json is exact).

Request fields reuse the command models' types (commands/models.py), so a body is checked as
strictly as the command it becomes: `"0.5"` is not an importance, an unknown field is refused.
The org is never a body field: it is the API key's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from commands.models import Content, Id, Importance, Metadata, Tags, Timestamp
from ledger.events import MemoryType, Message

__all__ = ["AnalyticsOut", "CleanupIn", "CleanupOut", "CommandResult", "HealthOut", "HierarchyCounts", "HierarchyOut",
           "HistoryEntryOut", "HistoryOut", "MemoryOut", "MemoryPage", "ReceiptOut", "RecallIn", "SessionIn",
           "SessionOut", "SessionReceiptOut", "StatsOut", "StoreIn", "TagsIn", "TrendingOut", "UpdateIn"]

class In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreIn(In):
    """A memory to store. `agent_id` may be left out when the key is bound to an agent."""

    agent_id: Id | None = None
    memory_id: Id | None = Field(None, description="Chosen by the server when left out (stable per Idempotency-Key).")
    content: Content
    memory_type: MemoryType = "note"
    tags: Tags = ()
    importance: Importance = 0.5
    metadata: Metadata = Field(default_factory=dict)
    expires_at: Timestamp | None = None
    session_id: Id | None = None


class UpdateIn(In):
    """What to change; at least one field."""

    agent_id: Id | None = None
    content: Content | None = None
    importance: Importance | None = None
    metadata: Metadata | None = None
    expires_at: Timestamp | None = None
    clear_expiry: bool = False


class TagsIn(In):
    agent_id: Id | None = None
    tags: Annotated[Tags, Field(min_length=1)]


class RecallIn(In):
    agent_id: Id | None = None
    user_id: Id | None = None
    query: Annotated[str, StringConstraints(max_length=1024)] | None = None


class SessionIn(In):
    """A raw session: `messages`, or one `session_data` text (stored as one user message)."""

    agent_id: Id | None = None
    session_id: Id | None = None
    messages: list[Message] | None = Field(None, min_length=1)
    session_data: Annotated[str, StringConstraints(min_length=1)] | None = None
    user_id: Id | None = None
    metadata: Metadata = Field(default_factory=dict)


class CleanupIn(In):
    retention_days: Annotated[int, Field(ge=0, le=36_500)] | None = Field(
        None, description="Purge raw transcripts older than this many days (default: MEMLEDGER_RETENTION_DAYS).")


# -- responses ----------------------------------------------------------------------------------


class ReceiptOut(BaseModel):
    """Proof of an append. `version` is the memory's version after it (its ETag)."""

    memory_id: str
    partition: int
    stream_id: str
    version: int
    duplicate: bool = Field(description="True when this is an idempotent retry: the original receipt, nothing new.")
    event_ids: list[str]


class SessionReceiptOut(BaseModel):
    session_id: str
    partition: int
    stream_id: str
    duplicate: bool
    queued_at: datetime
    queue_position: int | None = Field(description="Sessions ahead of this one (None when it cannot be told).")
    estimated_processing_s: float | None = Field(
        description="Seconds until processed, from the live workers' recent throughput (None: no worker data).")


class CommandResult(BaseModel):
    """One command's outcome in a batch: a receipt, or a problem."""

    index: int
    ok: bool
    status: int
    subject_id: str | None = None
    partition: int | None = None
    stream_id: str | None = None
    version: int | None = None
    duplicate: bool | None = None
    consistency_token: str | None = Field(None, description="As X-Consistency-Token: pass as `consistent_with`.")
    code: str | None = None
    detail: str | None = None
    current_version: int | None = None
    retry_after: float | None = None


class MemoryOut(BaseModel):
    org_id: str
    agent_id: str
    memory_id: str
    content: str
    memory_type: str
    tags: list[str]
    importance: float
    metadata: dict[str, Any]
    session_id: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    version: int
    recall_count: int
    last_recalled_at: datetime | None


class MemoryPage(BaseModel):
    items: list[MemoryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` (with the same filters) for the next page.")
    cache: Literal["HIT", "MISS", "BYPASS"]


class HistoryEntryOut(BaseModel):
    partition: int
    stream_id: str
    event: dict[str, Any] = Field(description="The event envelope: type, subject_version, occurred_at, actor, data...")


class HistoryOut(BaseModel):
    memory_id: str
    events: list[HistoryEntryOut]


class SessionOut(BaseModel):
    session: dict[str, Any]
    summary: list[dict[str, Any]]
    discrete: list[dict[str, Any]]


class HierarchyOut(BaseModel):
    rows: list[dict[str, Any]]


class HierarchyCounts(BaseModel):
    sessions: dict[str, int] = Field(description="Sessions by status: pending, processed, failed, ...")
    messages: int = Field(description="Messages of those sessions")
    summaries: int = Field(description="Live session summaries")
    extracted: int = Field(description="Live memories extracted from sessions (summaries excluded)")
    direct: int = Field(description="Live memories stored directly, not from a session")


class StatsOut(BaseModel):
    agents: list[dict[str, Any]] = Field(description="Per agent: live memories, stored, updated, forgotten, ...")
    tags: list[dict[str, Any]] = Field(description="Per tag, most used first: `{tag, memories}` (live memories)")
    hierarchy: HierarchyCounts


class TrendingOut(BaseModel):
    hours: int
    until: datetime
    tags: list[dict[str, Any]]
    memories: list[dict[str, Any]]


class AnalyticsOut(BaseModel):
    first: str = Field(alias="from")
    last: str = Field(alias="to")
    agents: int
    users: int
    events: dict[str, int]
    days: list[dict[str, Any]]

    model_config = ConfigDict(populate_by_name=True)


class FeedOut(BaseModel):
    agent_id: str
    items: list[dict[str, Any]]


class ProbeOut(BaseModel):
    ok: bool
    latency_ms: float | None
    detail: str


class HealthOut(BaseModel):
    ok: bool = Field(description="False (and status 503) when the ledger cannot accept writes.")
    redis: ProbeOut
    postgresql: ProbeOut
    migrated: bool | None
    persistence: dict[str, Any] | None = Field(description="Redis persistence (AOF) and whether it is durable.")
    lag: dict[str, int] = Field(description="Events behind the ledger's head, per projection (all partitions).")
    worker_heartbeat_age_s: float | None = Field(description="Age of the freshest worker heartbeat (None: none).")
    session_cache: dict[str, Any] | None = Field(
        None, description="Working memory's recent-messages cache: hits, misses, hit_rate, sessions_cached, "
                          "memory_bytes (all orgs).")
    features: dict[str, Any]


class ProcessingOut(BaseModel):
    queue: dict[str, int] = Field(description="The shared processing queue (all orgs): ready, in flight, delayed.")
    workers_alive: int
    pending: int = Field(description="This org's sessions waiting to be processed.")
    failed: int = Field(description="This org's sessions whose processing failed.")
    oldest_pending: dict[str, Any] | None
    recent_failures: list[dict[str, Any]]


class CleanupOut(BaseModel):
    expired: int
    purged: int
    closed: int = Field(0, description="Idle or too long conversations closed.")
    duplicates: int
    skipped: int
    errors: list[str]
