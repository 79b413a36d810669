"""The event envelope and the closed, registered set of event payloads.

A payload's shape changes only through a new `schema_version` plus an upcaster
(see `ledger.upcasting`); events already in the log are never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

MemoryType = Literal["note", "fact", "preference", "decision", "summary"]
#: What an API key may do: agents write and read, analysts read, operators read and run maintenance.
KeyRole = Literal["agent", "analyst", "operator"]
#: The agent every API-key event is recorded under: a key's issue and revocation then share
#: one partition and one subject field, whichever agent the key is restricted to.
KEYS_AGENT: Final = "memledger.keys"


class Payload(BaseModel):
    """Base of every event payload; subclasses register themselves by `type_name`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type_name: ClassVar[str]
    schema_version: ClassVar[int] = 1


class MemoryStored(Payload):
    type_name = "MemoryStored"
    schema_version = 2  # v1 had `text` and an integer importance 0..10

    content: str
    memory_type: MemoryType = "note"
    tags: tuple[str, ...] = ()
    importance: float = 0.5
    metadata: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime | None = None
    session_id: str | None = None


class MemoryUpdated(Payload):
    type_name = "MemoryUpdated"

    content: str | None = None
    importance: float | None = None
    metadata: dict[str, Any] | None = None
    expires_at: datetime | None = None
    clear_expiry: bool = False


class MemoryTagged(Payload):
    type_name = "MemoryTagged"

    tags: tuple[str, ...]


class MemoryUntagged(Payload):
    type_name = "MemoryUntagged"

    tags: tuple[str, ...]


class MemoryForgotten(Payload):
    type_name = "MemoryForgotten"

    reason: str | None = None


class MemoryExpired(Payload):
    type_name = "MemoryExpired"

    expires_at: datetime


class MemoryRecalled(Payload):
    type_name = "MemoryRecalled"

    user_id: str | None = None
    query: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user", "assistant", "system", "tool"]
    content: str
    at: datetime | None = None


class SessionIngested(Payload):
    type_name = "SessionIngested"

    transcript: tuple[Message, ...]
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class SessionSummarized(Payload):
    type_name = "SessionSummarized"

    summary: str
    memory_ids: tuple[str, ...] = ()
    extractor: str = "keywords"


class SessionExtractionFailed(Payload):
    type_name = "SessionExtractionFailed"

    error: str
    attempts: int


class SessionTranscriptPurged(Payload):
    type_name = "SessionTranscriptPurged"

    retention_days: int


class SessionRetryRequested(Payload):
    """A failed session is to be processed again (the worker re-reads the ingest event)."""

    type_name = "SessionRetryRequested"

    ingest_event_id: UUID  # the SessionIngested event to extract from
    ingest_stream_id: str  # its stream entry id (same partition as the session)
    reason: str | None = None


class MessageAppended(Payload):
    """One message of a conversation (working memory), appended as it happens. The session is
    the subject; the first message creates it, and the event's subject version is the
    message's 1-based number in the session (see commands.decide: nothing else bumps it
    while the conversation is open)."""

    type_name = "MessageAppended"

    role: Literal["user", "assistant", "system", "tool"]
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class SessionClosed(Payload):
    """A conversation takes no more messages; background extraction summarizes it (as an
    ingested session). `reason`: "closed" (asked for), "idle" (no message for the configured
    time) or "max_messages" (it reached the configured length)."""

    type_name = "SessionClosed"

    reason: Literal["closed", "idle", "max_messages"] = "closed"
    messages: int | None = None  # how many messages the closer saw (None: not known)


class ConversationSummarized(Payload):
    """The older part of a long conversation, summarized by the offline extractor: messages
    1..`through` are summed up by `summary` (a caller asks for "summary + last N")."""

    type_name = "ConversationSummarized"

    summary: str
    through: int
    extractor: str = "keywords"


class KeyIssued(Payload):
    """An API key was issued (the subject is its key id). Only the secret's hash is recorded."""

    type_name = "KeyIssued"

    role: KeyRole
    agent_id: str | None = None  # the one agent the key acts for; None: every agent of the org
    label: str | None = None
    secret_hash: str  # sha256 hex of the whole secret `mlk_<key id>_<random>`


class KeyRevoked(Payload):
    """An API key was revoked: it never authenticates again."""

    type_name = "KeyRevoked"

    reason: str | None = None


PAYLOADS: dict[str, type[Payload]] = {
    cls.type_name: cls
    for cls in (
        MemoryStored,
        MemoryUpdated,
        MemoryTagged,
        MemoryUntagged,
        MemoryForgotten,
        MemoryExpired,
        MemoryRecalled,
        SessionIngested,
        SessionSummarized,
        SessionExtractionFailed,
        SessionTranscriptPurged,
        SessionRetryRequested,
        MessageAppended,
        SessionClosed,
        ConversationSummarized,
        KeyIssued,
        KeyRevoked,
    )
}


class Event(BaseModel):
    """The envelope every event travels in; `data` is the typed payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: str
    schema_version: int
    org_id: str
    agent_id: str
    subject_id: str
    subject_version: int = 0  # assigned by the append script
    occurred_at: datetime
    causation_id: UUID | None = None
    correlation_id: UUID | None = None
    idempotency_key: str | None = None
    actor: str | None = None
    data: SerializeAsAny[Payload]


@dataclass(frozen=True, slots=True)
class Position:
    """Where an event sits in the log: its partition and Redis stream entry id."""

    partition: int
    stream_id: str

    @property
    def key(self) -> tuple[int, int]:
        """The stream id as a sortable pair (milliseconds, sequence)."""
        return stream_id_key(self.stream_id)


def stream_id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as read back from the log, with its position."""

    position: Position
    event: Event
    raw: bytes = b""  # the body exactly as stored, for the archive
    stored_version: int = 0  # the schema version `raw` was written in (before upcasting)
