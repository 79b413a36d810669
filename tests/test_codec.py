"""The codec and upcasters: every payload round-trips; old bodies read as the current schema."""

from __future__ import annotations

import types
import typing
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
import redis
from hypothesis import given, settings as hsettings, strategies as st

from ledger import Settings, open_log
from ledger.codec import decode_body, decode_entry, encode
from ledger.errors import EventError
from ledger.events import PAYLOADS, Event, MemoryForgotten, MemoryStored, Payload

# -- strategies ------------------------------------------------------------------------

TEXT = st.text(max_size=40)
OFFSETS = st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
AWARE = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2199, 1, 1), timezones=OFFSETS)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    """A strategy for one payload field, from its annotation (JSON-representable values only)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple:
        return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
    if origin is dict:
        return st.dictionaries(TEXT, JSON_VALUES, max_size=4)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(), str: TEXT, bool: st.booleans(), int: st.integers(-(2**31), 2**31),
        float: st.floats(allow_nan=False, allow_infinity=False), datetime: AWARE, UUID: st.uuids(),
    }
    if annotation in simple:
        return simple[annotation]
    if hasattr(annotation, "model_fields"):
        return models(annotation)  # a nested model, e.g. Message
    return st.from_type(annotation)


def models(cls: Any) -> st.SearchStrategy[Any]:
    """A pydantic model with every field drawn, defaults included."""
    return st.builds(cls, **{name: strategy_for(f.annotation) for name, f in cls.model_fields.items()})


def events(payload_cls: type[Payload]) -> st.SearchStrategy[Event]:
    ids = st.uuids(version=4)
    return st.builds(
        Event, event_id=ids, type=st.just(payload_cls.type_name), schema_version=st.just(payload_cls.schema_version),
        org_id=TEXT, agent_id=TEXT, subject_id=TEXT, subject_version=st.integers(1, 10**6), occurred_at=AWARE,
        causation_id=st.none() | ids, correlation_id=st.none() | ids, idempotency_key=st.none() | TEXT,
        actor=st.none() | TEXT, data=models(payload_cls))


def v1_memory_stored(text: str, importance: int, **data: Any) -> dict[str, Any]:
    """A MemoryStored body exactly as version 1 of the code wrote it."""
    return {"event_id": str(uuid4()), "type": "MemoryStored", "schema_version": 1, "org_id": "acme",
            "agent_id": "a1", "subject_id": "mem_1", "occurred_at": "2024-03-01T10:00:00Z",
            "data": {"text": text, "importance": importance, **data}}


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("payload_cls", list(PAYLOADS.values()), ids=list(PAYLOADS))
@hsettings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_payload_round_trips(payload_cls: type[Payload], data: st.DataObject) -> None:
    event = data.draw(events(payload_cls))

    decoded = decode_body(encode(event), event.subject_version)

    assert decoded == event
    assert type(decoded.data) is payload_cls


def test_encode_leaves_the_version_to_the_append_script() -> None:
    event = Event(event_id=uuid4(), type="MemoryForgotten", schema_version=1, org_id="o", agent_id="a",
                  subject_id="m", subject_version=9, occurred_at=datetime.now(timezone.utc),
                  data=MemoryForgotten())

    assert "subject_version" not in orjson.loads(encode(event))
    assert decode_body(encode(event), 4).subject_version == 4


# -- upcasting -------------------------------------------------------------------------


def test_v1_memory_stored_decodes_as_v2() -> None:
    body = orjson.dumps(v1_memory_stored("likes tea", 7, tags=["drinks"]))

    event = decode_body(body, 1)

    assert event.schema_version == 2
    assert event.data == MemoryStored(content="likes tea", importance=0.7, memory_type="note", tags=("drinks",))


@hsettings(max_examples=60, deadline=None)
@given(text=TEXT, importance=st.integers(0, 10))
def test_v1_importance_scales_to_unit_interval(text: str, importance: int) -> None:
    event = decode_body(orjson.dumps(v1_memory_stored(text, importance)), 1)

    assert event.data.content == text  # type: ignore[attr-defined]
    assert event.data.importance == pytest.approx(importance / 10)  # type: ignore[attr-defined]


def test_v1_body_read_back_from_a_real_stream_is_upcast(settings: Settings, redis_client: redis.Redis) -> None:
    # Given a v1 body written straight into the stream, as the old code did
    log = open_log(settings)
    body = orjson.dumps(v1_memory_stored("prefers dark mode", 7))
    redis_client.xadd(log.keys.stream(2), {"v": 1, "e": body})

    # When it is read through the log
    [record] = log.read(2)

    # Then it arrives as the current schema, at its position
    assert record.position.partition == 2
    assert record.event.schema_version == 2
    assert record.event.subject_version == 1
    assert record.event.data.content == "prefers dark mode"  # type: ignore[attr-defined]
    assert record.event.data.importance == 0.7  # type: ignore[attr-defined]
    assert record.event.data.memory_type == "note"  # type: ignore[attr-defined]


# -- errors ----------------------------------------------------------------------------


def test_unknown_event_type_is_named() -> None:
    body = {**v1_memory_stored("x", 1), "type": "MemoryTeleported"}

    with pytest.raises(EventError, match="unknown event type 'MemoryTeleported'"):
        decode_body(orjson.dumps(body), 1)


def test_a_version_newer_than_the_code_says_to_upgrade() -> None:
    body = {**v1_memory_stored("x", 1), "schema_version": 3}

    with pytest.raises(EventError, match=r"MemoryStored v3 is newer than this code knows \(v2\); upgrade"):
        decode_body(orjson.dumps(body), 1)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": "MemoryForgotten"}'])
def test_undecodable_bodies_raise_event_error(body: bytes) -> None:
    with pytest.raises(EventError, match="undecodable event body"):
        decode_body(body, 1)


def test_a_stream_entry_without_an_event_is_refused() -> None:
    with pytest.raises(EventError, match="stream entry 1-0 of partition 0 is not an event"):
        decode_entry(0, b"1-0", {b"hello": b"world"})
