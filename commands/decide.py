"""Pure command handlers: `decide()` turns a valid command into events, with no I/O.

The write-side checks (does the subject exist, has it ended, is the expected version
current) need the subject's latest state, which only the append script sees
atomically. `decide()` therefore states them as a `Decision.mode`; `check()` is the same
rule in Python, used to fold state in tests and by anything holding a subject's history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from ledger import events as ev
from ledger.errors import (
    CommandError,
    SessionClosed,
    SubjectExists,
    SubjectForgotten,
    UnknownSubject,
    VersionConflict,
)
from ledger.eventlog import Kind, Mode, SubjectState

from .models import (
    AppendMessage,
    CloseSession,
    Command,
    ExpireMemory,
    ForgetMemory,
    IngestSession,
    IssueKey,
    MarkSessionFailed,
    PurgeTranscript,
    RecordRecall,
    RetrySession,
    RevokeKey,
    StoreMemory,
    SummarizeConversation,
    SummarizeSession,
    TagMemory,
    UntagMemory,
    UpdateMemory,
)

__all__ = ["Decision", "Kind", "Mode", "SubjectState", "check", "decide", "fold"]


Status = Literal["absent", "live", "ended", "open", "closed"]


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    subject_id: str
    mode: Mode
    events: tuple[ev.Event, ...]


def _payload(command: Command) -> tuple[Kind, str, Mode, ev.Payload]:
    match command:
        case StoreMemory():
            return "m", command.memory_id, "create", ev.MemoryStored(
                content=command.content, memory_type=command.memory_type, tags=command.tags,
                importance=command.importance, metadata=command.metadata,
                expires_at=command.expires_at, session_id=command.session_id)
        case UpdateMemory():
            return "m", command.memory_id, "change", ev.MemoryUpdated(
                content=command.content, importance=command.importance, metadata=command.metadata,
                expires_at=command.expires_at, clear_expiry=command.clear_expiry)
        case TagMemory():
            return "m", command.memory_id, "change", ev.MemoryTagged(tags=command.tags)
        case UntagMemory():
            return "m", command.memory_id, "change", ev.MemoryUntagged(tags=command.tags)
        case ForgetMemory():
            return "m", command.memory_id, "end", ev.MemoryForgotten(reason=command.reason)
        case RecordRecall():
            return "m", command.memory_id, "touch", ev.MemoryRecalled(user_id=command.user_id, query=command.query)
        case IngestSession():
            return "s", command.session_id, "create", ev.SessionIngested(
                transcript=command.transcript, user_id=command.user_id, metadata=command.metadata)
        case ExpireMemory():
            return "m", command.memory_id, "end", ev.MemoryExpired(expires_at=command.expires_at)
    return _session_payload(command)


def _session_payload(command: Command) -> tuple[Kind, str, Mode, ev.Payload]:
    """The background-processing commands: each changes an existing session."""
    match command:
        case SummarizeSession():
            return "s", command.session_id, "change", ev.SessionSummarized(
                summary=command.summary, memory_ids=command.memory_ids, extractor=command.extractor)
        case MarkSessionFailed():
            return "s", command.session_id, "change", ev.SessionExtractionFailed(
                error=command.error, attempts=command.attempts)
        case RetrySession():
            return "s", command.session_id, "change", ev.SessionRetryRequested(
                ingest_event_id=command.ingest_event_id, ingest_stream_id=command.ingest_stream_id,
                reason=command.reason)
        case PurgeTranscript():
            return "s", command.session_id, "change", ev.SessionTranscriptPurged(
                retention_days=command.retention_days)
    return _conversation_payload(command)


def _conversation_payload(command: Command) -> tuple[Kind, str, Mode, ev.Payload]:
    """Working memory. A message bumps the session's version, so a message's subject version
    is its number in the session; the partial summary is a touch, which leaves it alone."""
    match command:
        case AppendMessage():
            return "s", command.session_id, "open", ev.MessageAppended(
                role=command.role, content=command.content, metadata=command.metadata)
        case CloseSession():
            return "s", command.session_id, "close", ev.SessionClosed(
                reason=command.reason, messages=command.messages)
        case SummarizeConversation():
            return "s", command.session_id, "touch", ev.ConversationSummarized(
                summary=command.summary, through=command.through, extractor=command.extractor)
    return _key_payload(command)


def _key_payload(command: Command) -> tuple[Kind, str, Mode, ev.Payload]:
    """API keys: issued once per id (create), revoked once (end: a second revoke finds it ended)."""
    match command:
        case IssueKey():
            return "k", command.key_id, "create", ev.KeyIssued(
                role=command.role, agent_id=command.key_agent_id, label=command.label,
                secret_hash=command.secret_hash)
        case RevokeKey():
            return "k", command.key_id, "end", ev.KeyRevoked(reason=command.reason)
    raise TypeError(f"no handler for {type(command).__name__}")


def decide(command: Command, now: datetime, new_event_id: Callable[[], UUID]) -> Decision:
    """The events `command` produces, and the condition under which they may be appended."""
    kind, subject_id, mode, payload = _payload(command)
    event = ev.Event(
        event_id=new_event_id(), type=payload.type_name, schema_version=payload.schema_version,
        org_id=command.org_id, agent_id=command.agent_id, subject_id=subject_id,
        occurred_at=now, causation_id=command.causation_id, correlation_id=command.correlation_id,
        idempotency_key=command.idempotency_key, actor=command.actor, data=payload)
    return Decision(kind, subject_id, mode, (event,))


def check(state: SubjectState, mode: Mode, expected_version: int | None) -> CommandError | None:
    """The append script's rule, in Python: why `mode` may not apply to `state`, if it may not."""
    if expected_version is not None and expected_version != state.version:
        return VersionConflict(f"at version {state.version}, not {expected_version}", state.version)
    if mode == "create":
        return SubjectExists(f"exists at version {state.version}") if state.status != "absent" else None
    if mode in ("open", "close"):
        return _conversation_check(state, mode)
    if state.status == "absent":
        return UnknownSubject("does not exist")
    if state.status == "ended":
        return SubjectForgotten("was forgotten or expired")
    return None


def _conversation_check(state: SubjectState, mode: Mode) -> CommandError | None:
    if mode == "open" and state.status in ("absent", "open"):
        return None
    if state.status == "absent":
        return UnknownSubject("does not exist")
    if state.status == "ended":
        return SubjectForgotten("was forgotten or expired")
    return SessionClosed("is closed") if state.status != "open" else None


#: The status an accepted decision of a mode leaves (others keep the subject's status:
#: a change of a closed conversation leaves it closed).
_LEAVES: dict[str, Status] = {"end": "ended", "open": "open", "close": "closed", "create": "live"}


def fold(state: SubjectState, mode: Mode, events: int = 1) -> SubjectState:
    """The subject's state after an accepted decision of `mode` with `events` events."""
    if mode == "touch":
        return state
    return SubjectState(state.version + events, _LEAVES.get(mode, state.status))
