"""The stream body of a valid command's event, written straight from the command.

`decide()` builds the event and its payload as pydantic models, which validates every
value a second time, and `ledger.codec.encode` then serializes them. A command that
passed validation already holds every value its event carries, in the types the event
declares, so for the commands agents send most the bus writes the same bytes directly:
one dict and one `orjson.dumps`. A `Route` says what `decide()` says for that command
type (subject kind, subject field, mode, payload type); the payload's fields are the
command's fields of the same names, in the payload's order, as pydantic would write them.

tests/test_direct_encode.py checks, for every routed command type, that the decision and
the bytes equal `decide()` + `encode()`, so the two cannot drift apart. Command types
without a route (sessions, keys, the workers' commands) take the model path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ledger import events as ev
from ledger.eventlog import Kind, Mode

from .models import (
    AppendMessage,
    CloseSession,
    Command,
    ForgetMemory,
    RecordRecall,
    StoreMemory,
    TagMemory,
    UntagMemory,
    UpdateMemory,
)

__all__ = ["ROUTES", "Direct", "Route", "encode_direct"]


@dataclass(frozen=True, slots=True)
class Route:
    """How `decide()` turns one command type into its event (see `commands.decide`)."""

    kind: Kind
    subject: str  # the command's field naming the subject
    mode: Mode
    payload: type[ev.Payload]

    @property
    def fields(self) -> tuple[str, ...]:
        """The payload's fields in the order pydantic writes them; the command has each."""
        return tuple(self.payload.model_fields)


ROUTES: dict[type[Command], Route] = {
    StoreMemory: Route("m", "memory_id", "create", ev.MemoryStored),
    UpdateMemory: Route("m", "memory_id", "change", ev.MemoryUpdated),
    TagMemory: Route("m", "memory_id", "change", ev.MemoryTagged),
    UntagMemory: Route("m", "memory_id", "change", ev.MemoryUntagged),
    ForgetMemory: Route("m", "memory_id", "end", ev.MemoryForgotten),
    RecordRecall: Route("m", "memory_id", "touch", ev.MemoryRecalled),
    AppendMessage: Route("s", "session_id", "open", ev.MessageAppended),
    CloseSession: Route("s", "session_id", "close", ev.SessionClosed),
}
#: Field tuples computed once (Route.fields walks the payload's model fields).
_FIELDS = {cls: route.fields for cls, route in ROUTES.items()}


@dataclass(frozen=True, slots=True)
class Direct:
    """A routed command's decision: what `decide()` + `encode()` would give, as bytes."""

    kind: Kind
    subject_id: str
    mode: Mode
    body: bytes


def encode_direct(command: Command, now: datetime, event_id: str) -> Direct | None:
    """The command's one event, encoded; None when its type has no route, or when orjson
    cannot write one of its values (the model path then decides, and reports it)."""
    route = ROUTES.get(type(command))
    if route is None:
        return None
    values = command.__dict__
    payload = route.payload
    subject_id: str = values[route.subject]
    envelope: dict[str, Any] = {
        "event_id": event_id, "type": payload.type_name, "schema_version": payload.schema_version,
        "org_id": command.org_id, "agent_id": command.agent_id, "subject_id": subject_id, "occurred_at": now,
        "causation_id": command.causation_id, "correlation_id": command.correlation_id,
        "idempotency_key": command.idempotency_key, "actor": command.actor,
        "data": {name: values[name] for name in _FIELDS[type(command)]}}
    try:
        body = orjson.dumps(envelope, option=orjson.OPT_UTC_Z)
    except TypeError:
        return None
    return Direct(route.kind, subject_id, route.mode, body)
