"""Commands agents send: frozen pydantic models that validate every field at the edge."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from ledger.events import KEYS_AGENT, KeyRole, MemoryType, Message
from ledger.ids import new_id
from ledger.storable import check_storable, check_timestamp


MAX_CONTENT = 32_768
MAX_METADATA_BYTES = 8_192
MAX_TAGS = 32
MAX_TRANSCRIPT_MESSAGES = 2_000
MAX_TRANSCRIPT_BYTES = 1_048_576

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$", to_lower=True)]
Content = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTENT, strip_whitespace=True)]
# Scalars are strict: `true` is not an importance, "0.5" is not a number, 1.0 is not a version.
Importance = Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]


def _iso_text(value: object) -> object:
    """A timestamp arrives as a datetime or ISO 8601 text; a bare number is refused, not read
    as seconds since 1970."""
    if not isinstance(value, (str, datetime)):
        raise ValueError("expected an ISO 8601 timestamp such as 2026-01-31T12:00:00Z")
    return value


def _uuid_text(value: object) -> object:
    if not isinstance(value, (str, UUID)):
        raise ValueError("expected a UUID in text form")
    return value


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    check_storable(value, "metadata")
    size = len(orjson.dumps(value))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
    return value


def _unique(tags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tags))


Timestamp = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(check_timestamp)]
Uuid = Annotated[UUID, BeforeValidator(_uuid_text)]
Metadata = Annotated[dict[str, Any], AfterValidator(_small_json)]
Tags = Annotated[tuple[Tag, ...], Field(max_length=MAX_TAGS), AfterValidator(_unique)]


def new_subject_id(prefix: str, org_id: object, agent_id: object, idempotency_key: object) -> str:
    """The id of a subject a command creates when the sender names none (`mem_...`, `ses_...`).

    With an idempotency key it is derived from (org, agent, key), so a retry names the very
    subject the original created (and whose receipt the retry gets); without one it is new.
    """
    if not all(isinstance(v, str) for v in (org_id, agent_id, idempotency_key)):
        return new_id(prefix)
    key = f"{org_id}\0{agent_id}\0{idempotency_key}".encode("utf-8", "surrogatepass")
    return f"{prefix}_{hashlib.sha256(key).hexdigest()[:32]}"


class Command(BaseModel):
    """Fields every command carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: True for the internal commands that only the system's own components send
    #: (workers, the expiry job, an operator's retry); an agent's bus rejects them.
    system_only: ClassVar[bool] = False

    org_id: Id
    agent_id: Id
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    expected_version: Count | None = None
    actor: Annotated[str, StringConstraints(max_length=200)] | None = None
    correlation_id: Uuid | None = None
    causation_id: Uuid | None = None

    #: (field, id prefix) of the subject this command creates, named by `new_subject_id` when left out.
    new_subject: ClassVar[tuple[str, str] | None] = None

    @model_validator(mode="before")
    @classmethod
    def _name_new_subject(cls, data: Any) -> Any:
        if cls.new_subject is None or not isinstance(data, dict) or data.get(cls.new_subject[0]) is not None:
            return data
        field, prefix = cls.new_subject
        return {**data, field: new_subject_id(prefix, data.get("org_id"), data.get("agent_id"),
                                               data.get("idempotency_key"))}

    @model_validator(mode="after")
    def _storable(self) -> Command:
        # Every value of every command, whatever its field: see ledger.storable.
        for name, value in self.__dict__.items():
            check_storable(value, name)
        return self


class StoreMemory(Command):
    type: Literal["StoreMemory"] = "StoreMemory"
    new_subject: ClassVar[tuple[str, str] | None] = ("memory_id", "mem")
    memory_id: Id
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
    clear_expiry: Flag = False

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
    new_subject: ClassVar[tuple[str, str] | None] = ("session_id", "ses")
    session_id: Id
    transcript: Annotated[tuple[Message, ...], Field(min_length=1, max_length=MAX_TRANSCRIPT_MESSAGES)]
    user_id: Id | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounded(self) -> IngestSession:
        size = sum(len(m.content.encode("utf-8", "surrogatepass")) for m in self.transcript)
        if size > MAX_TRANSCRIPT_BYTES:
            raise ValueError(f"transcript is {size} bytes; the limit is {MAX_TRANSCRIPT_BYTES}")
        return self


#: The longest message a conversation takes, in characters (as a memory's content).
MAX_MESSAGE = MAX_CONTENT
Role = Literal["user", "assistant", "system", "tool"]
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("a message needs some content, not only whitespace")
    return value


class AppendMessage(Command):
    """One message of a conversation, as it happens; the first one creates the session.

    Content is kept as sent (not stripped: whitespace may matter in a chat), but may not be
    empty or only whitespace. With no `session_id` a new session is named (from the
    idempotency key when there is one, see `new_subject_id`): send the rest to that id.
    """

    type: Literal["AppendMessage"] = "AppendMessage"
    new_subject: ClassVar[tuple[str, str] | None] = ("session_id", "ses")
    session_id: Id
    role: Role
    content: Annotated[MessageText, AfterValidator(_not_blank)]
    metadata: Metadata = Field(default_factory=dict)


class CloseSession(Command):
    """End a conversation: it takes no more messages and goes to background extraction."""

    type: Literal["CloseSession"] = "CloseSession"
    session_id: Id
    reason: Literal["closed", "idle", "max_messages"] = "closed"
    messages: Count | None = None


class SummarizeConversation(Command):
    """The worker's summary of the older part (messages 1..through) of a long conversation."""

    type: Literal["SummarizeConversation"] = "SummarizeConversation"
    system_only: ClassVar[bool] = True
    session_id: Id
    summary: Content
    through: Annotated[int, Strict(), Field(ge=1)]
    extractor: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "keywords"


class SummarizeSession(Command):
    """The worker's result for a session: its summary and the memories extracted from it."""

    type: Literal["SummarizeSession"] = "SummarizeSession"
    system_only: ClassVar[bool] = True
    session_id: Id
    summary: Content
    memory_ids: Annotated[tuple[Id, ...], Field(max_length=1000)] = ()
    extractor: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "keywords"


class MarkSessionFailed(Command):
    """Extraction of a session kept failing; `error` says why (shown by `memledger worker status`)."""

    type: Literal["MarkSessionFailed"] = "MarkSessionFailed"
    system_only: ClassVar[bool] = True
    session_id: Id
    error: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    attempts: Annotated[int, Strict(), Field(ge=1)]


class RetrySession(Command):
    """Process a (failed) session again, from its SessionIngested event."""

    type: Literal["RetrySession"] = "RetrySession"
    system_only: ClassVar[bool] = True
    session_id: Id
    ingest_event_id: Uuid
    ingest_stream_id: Annotated[str, StringConstraints(pattern=r"^[0-9]+-[0-9]+$")]
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class ExpireMemory(Command):
    """End a memory whose `expires_at` has passed (sent by the periodic expiry job)."""

    type: Literal["ExpireMemory"] = "ExpireMemory"
    system_only: ClassVar[bool] = True
    memory_id: Id
    expires_at: Timestamp


class PurgeTranscript(Command):
    """Drop a session's raw transcript from the read models (retention); the log keeps it."""

    type: Literal["PurgeTranscript"] = "PurgeTranscript"
    system_only: ClassVar[bool] = True
    session_id: Id
    retention_days: Annotated[int, Strict(), Field(ge=0, le=36_500)]


KeyId = Annotated[str, StringConstraints(pattern=r"^key_[0-9a-f]{32}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class IssueKey(Command):
    """Issue an API key of `org_id`. The secret is made and shown by the issuer; the ledger
    only ever holds its hash. Sent by operators only (`memledger keys create`)."""

    type: Literal["IssueKey"] = "IssueKey"
    system_only: ClassVar[bool] = True
    agent_id: Literal["memledger.keys"] = KEYS_AGENT  # see ledger.events.KEYS_AGENT
    key_id: KeyId = Field(default_factory=lambda: new_id("key"))
    role: KeyRole
    key_agent_id: Id | None = None  # the one agent the key may act as; None: any agent of the org
    label: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    secret_hash: Sha256Hex


class RevokeKey(Command):
    """Revoke an API key of `org_id`: from then on it authenticates nothing."""

    type: Literal["RevokeKey"] = "RevokeKey"
    system_only: ClassVar[bool] = True
    agent_id: Literal["memledger.keys"] = KEYS_AGENT
    key_id: KeyId
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


AnyCommand = Annotated[
    Union[StoreMemory, UpdateMemory, TagMemory, UntagMemory, ForgetMemory, RecordRecall, IngestSession,
          SummarizeSession, MarkSessionFailed, RetrySession, ExpireMemory, PurgeTranscript, IssueKey,
          RevokeKey, AppendMessage, CloseSession, SummarizeConversation],
    Field(discriminator="type"),
]
COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(AnyCommand)
#: A batch of commands in one validator call (the command bus's `send_many`).
COMMANDS_ADAPTER: TypeAdapter[list[AnyCommand]] = TypeAdapter(list[AnyCommand])


def name_new_subject(command: dict[str, Any]) -> dict[str, Any]:
    """Fill in, in a command's JSON form, the id of the memory or session it creates when the
    sender named none, exactly as the model would, so a surface can report that id."""
    kind = NEW_SUBJECTS.get(command.get("type"))  # type: ignore[arg-type]
    if kind is not None and command.get(kind[0]) is None:
        command[kind[0]] = new_subject_id(kind[1], command.get("org_id"), command.get("agent_id"),
                                          command.get("idempotency_key"))
    return command


#: Command type -> (field, id prefix) of the subject it creates.
NEW_SUBJECTS: dict[str, tuple[str, str]] = {
    cls.model_fields["type"].default: cls.new_subject for cls in (StoreMemory, IngestSession, AppendMessage)
    if cls.new_subject is not None}

