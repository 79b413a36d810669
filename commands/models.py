"""Commands agents send: frozen pydantic models that validate every field at the edge."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from ledger.events import MemoryType, Message
from ledger.ids import new_id

MAX_CONTENT = 32_768
MAX_METADATA_BYTES = 8_192
MAX_TAGS = 32
MAX_TRANSCRIPT_MESSAGES = 2_000
MAX_TRANSCRIPT_BYTES = 1_048_576

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$", to_lower=True)]
def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text may not contain NUL characters (\\x00)")
    return value


Content = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTENT, strip_whitespace=True),
                    AfterValidator(_no_nul)]
Importance = Annotated[float, Field(ge=0.0, le=1.0)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a timezone, e.g. 2026-01-31T12:00:00Z")
    if not datetime(2000, 1, 1, tzinfo=timezone.utc) <= value <= datetime(2200, 1, 1, tzinfo=timezone.utc):
        raise ValueError("timestamp must lie between 2000 and 2200")
    return value.astimezone(timezone.utc)


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    encoded = orjson.dumps(value)
    if b"\\u0000" in encoded:
        raise ValueError("metadata may not contain NUL characters (\\u0000)")
    size = len(encoded)
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
    return value


def _unique(tags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tags))


Timestamp = Annotated[datetime, AfterValidator(_aware)]
Metadata = Annotated[dict[str, Any], AfterValidator(_small_json)]
Tags = Annotated[tuple[Tag, ...], Field(max_length=MAX_TAGS), AfterValidator(_unique)]


class Command(BaseModel):
    """Fields every command carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    org_id: Id
    agent_id: Id
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    expected_version: Annotated[int, Field(ge=0)] | None = None
    actor: Annotated[str, StringConstraints(max_length=200)] | None = None
    correlation_id: UUID | None = None
    causation_id: UUID | None = None


class StoreMemory(Command):
    type: Literal["StoreMemory"] = "StoreMemory"
    memory_id: Id = Field(default_factory=lambda: new_id("mem"))
    content: Content
    memory_type: MemoryType = "note"
    tags: Tags = ()
    importance: Importance = 0.5
    metadata: Metadata = Field(default_factory=dict)
    expires_at: Timestamp | None = None
    session_id: Id | None = None


class UpdateMemory(Command):
    type: Literal["UpdateMemory"] = "UpdateMemory"
    memory_id: Id
    content: Content | None = None
    importance: Importance | None = None
    metadata: Metadata | None = None
    expires_at: Timestamp | None = None
    clear_expiry: bool = False

    @model_validator(mode="after")
    def _changes_something(self) -> UpdateMemory:
        if (self.content, self.importance, self.metadata, self.expires_at) == (None,) * 4 and not self.clear_expiry:
            raise ValueError("an update must change content, importance, metadata or expiry")
        if self.clear_expiry and self.expires_at is not None:
            raise ValueError("give either expires_at or clear_expiry, not both")
        return self


class TagMemory(Command):
    type: Literal["TagMemory"] = "TagMemory"
    memory_id: Id
    tags: Annotated[Tags, Field(min_length=1)]


class UntagMemory(Command):
    type: Literal["UntagMemory"] = "UntagMemory"
    memory_id: Id
    tags: Annotated[Tags, Field(min_length=1)]


class ForgetMemory(Command):
    type: Literal["ForgetMemory"] = "ForgetMemory"
    memory_id: Id
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class RecordRecall(Command):
    type: Literal["RecordRecall"] = "RecordRecall"
    memory_id: Id
    user_id: Id | None = None
    query: Annotated[str, StringConstraints(max_length=1024)] | None = None


class IngestSession(Command):
    type: Literal["IngestSession"] = "IngestSession"
    session_id: Id = Field(default_factory=lambda: new_id("ses"))
    transcript: Annotated[tuple[Message, ...], Field(min_length=1, max_length=MAX_TRANSCRIPT_MESSAGES)]
    user_id: Id | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounded(self) -> IngestSession:
        if any("\x00" in m.content for m in self.transcript):
            raise ValueError("transcript messages may not contain NUL characters (\\x00)")
        size = sum(len(m.content.encode()) for m in self.transcript)
        if size > MAX_TRANSCRIPT_BYTES:
            raise ValueError(f"transcript is {size} bytes; the limit is {MAX_TRANSCRIPT_BYTES}")
        return self


class SummarizeSession(Command):
    """The worker's result for a session: its summary and the memories extracted from it."""

    type: Literal["SummarizeSession"] = "SummarizeSession"
    session_id: Id
    summary: Content
    memory_ids: Annotated[tuple[Id, ...], Field(max_length=1000)] = ()
    extractor: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "keywords"


class MarkSessionFailed(Command):
    """Extraction of a session kept failing; `error` says why (shown by `memledger worker status`)."""

    type: Literal["MarkSessionFailed"] = "MarkSessionFailed"
    session_id: Id
    error: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    attempts: Annotated[int, Field(ge=1)]


class RetrySession(Command):
    """Process a (failed) session again, from its SessionIngested event."""

    type: Literal["RetrySession"] = "RetrySession"
    session_id: Id
    ingest_event_id: UUID
    ingest_stream_id: Annotated[str, StringConstraints(pattern=r"^[0-9]+-[0-9]+$")]
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class ExpireMemory(Command):
    """End a memory whose `expires_at` has passed (sent by the periodic expiry job)."""

    type: Literal["ExpireMemory"] = "ExpireMemory"
    memory_id: Id
    expires_at: Timestamp


class PurgeTranscript(Command):
    """Drop a session's raw transcript from the read models (retention); the log keeps it."""

    type: Literal["PurgeTranscript"] = "PurgeTranscript"
    session_id: Id
    retention_days: Annotated[int, Field(ge=0, le=36_500)]


AnyCommand = Annotated[
    Union[StoreMemory, UpdateMemory, TagMemory, UntagMemory, ForgetMemory, RecordRecall, IngestSession,
          SummarizeSession, MarkSessionFailed, RetrySession, ExpireMemory, PurgeTranscript],
    Field(discriminator="type"),
]
COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(AnyCommand)
