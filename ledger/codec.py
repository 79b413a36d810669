"""Encoding events for the stream and decoding them (with upcasting) on every read path."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from .errors import EventError
from .events import PAYLOADS, Event, Position, RecordedEvent
from .upcasting import upcast


def encode(event: Event) -> bytes:
    """The stream form of an event.

    `subject_version` is left out: the append script assigns it atomically and stores
    it beside the body (field `v`), so a body can be encoded before the version is known.
    """
    return event.__pydantic_serializer__.to_json(event, exclude={"subject_version"}, serialize_as_any=True)


def decode_body(body: bytes | str, subject_version: int) -> Event:
    """Decode a stored event body, upcasting its payload to the current schema version."""
    return _decode(body, subject_version)[0]


def _decode(body: bytes | str, subject_version: int) -> tuple[Event, int]:
    try:
        raw: dict[str, Any] = orjson.loads(body)
        return from_dict(raw, subject_version), int(raw["schema_version"])
    except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError) as e:
        raise EventError(f"undecodable event body: {e}") from e


def from_dict(raw: dict[str, Any], subject_version: int) -> Event:
    """Build an Event from its JSON form (as stored in the stream or the archive)."""
    event_type = raw["type"]
    data = upcast(event_type, raw["schema_version"], raw["data"])
    payload = PAYLOADS[event_type].model_validate(data)
    fields = {**raw, "schema_version": payload.schema_version, "data": payload}
    fields["subject_version"] = subject_version
    return Event.model_validate(fields)


def decode_entry(partition: int, stream_id: bytes | str, fields: dict[Any, Any]) -> RecordedEvent:
    """Decode one Redis stream entry (`v` = subject version, `e` = body)."""
    sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    body = fields.get(b"e", fields.get("e"))
    version = fields.get(b"v", fields.get("v"))
    if body is None or version is None:
        raise EventError(f"stream entry {sid} of partition {partition} is not an event")
    raw = body.encode() if isinstance(body, str) else body
    event, stored_version = _decode(raw, int(version))
    return RecordedEvent(Position(partition, sid), event, raw, stored_version)
