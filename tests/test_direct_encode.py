"""commands.direct writes exactly what decide() + encode() write, for every routed command type."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from commands import Command, decide, parse
from commands.bus import CommandBus, parse_many
from commands.direct import ROUTES, encode_direct
from ledger.codec import decode_body, encode
from ledger.errors import InvalidCommand
from ledger.ids import uuid7

NOW = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc)
FULL: dict[str, Any] = {"org_id": "org-1", "agent_id": "agent.1", "idempotency_key": "k-ü-1", "expected_version": 3,
                        "actor": "key_1", "correlation_id": str(uuid.uuid4()), "causation_id": str(uuid.uuid4())}
EXAMPLES: list[dict[str, Any]] = [
    {"type": "StoreMemory", "content": "  likes tea 🍵 \u2028 ", "memory_id": "m1"},
    {"type": "StoreMemory", "content": "x", "tags": ["Work", "work", "b/c"], "importance": 1.0, "memory_type": "fact",
     "metadata": {"n": [1, 2.5, None, True, {"deep": "é"}], "big": 2**63 - 1, "neg": -0.0, "e": 1e-7},
     "expires_at": "2027-01-01T00:00:00+02:00", "session_id": "ses1"},
    {"type": "StoreMemory", "content": "no id: named from the key"},
    {"type": "UpdateMemory", "memory_id": "m1", "content": "new", "importance": 0.0, "metadata": {},
     "expires_at": "2026-05-01T00:00:00.5Z"},
    {"type": "UpdateMemory", "memory_id": "m1", "clear_expiry": True},
    {"type": "TagMemory", "memory_id": "m1", "tags": ["a", "B"]},
    {"type": "UntagMemory", "memory_id": "m1", "tags": ["a"]},
    {"type": "ForgetMemory", "memory_id": "m1", "reason": "asked to"},
    {"type": "ForgetMemory", "memory_id": "m1"},
    {"type": "RecordRecall", "memory_id": "m1", "user_id": "u1", "query": "tea?"},
    {"type": "AppendMessage", "session_id": "s1", "role": "user", "content": " hi\n", "metadata": {"lang": "en"}},
    {"type": "CloseSession", "session_id": "s1", "reason": "idle", "messages": 4},
]


def _same_as_decide(command: Command, now: datetime = NOW) -> None:
    decision = decide(command, now, uuid7)
    event = decision.events[0]
    direct = encode_direct(command, now, str(event.event_id))
    assert direct is not None
    assert (direct.kind, direct.subject_id, direct.mode) == (decision.kind, decision.subject_id, decision.mode)
    assert direct.body == encode(event)
    assert decode_body(direct.body, 1) == event.model_copy(update={"subject_version": 1})


@pytest.mark.parametrize("fields", EXAMPLES, ids=lambda f: str(f["type"]))
@pytest.mark.parametrize("envelope", [{"org_id": "o", "agent_id": "a"}, FULL], ids=["bare", "full"])
def test_direct_bytes_equal_decide_and_encode(fields: dict[str, Any], envelope: dict[str, Any]) -> None:
    _same_as_decide(parse({**envelope, **fields}))


def test_every_route_is_tested_and_takes_only_command_fields() -> None:
    tested = {parse({"org_id": "o", "agent_id": "a", **f}).__class__ for f in EXAMPLES}
    assert tested == set(ROUTES)
    for cls, route in ROUTES.items():
        assert set(route.fields) <= set(cls.model_fields), cls.__name__


def test_a_clock_in_another_zone_is_written_as_pydantic_writes_it() -> None:
    command = parse({"type": "TagMemory", "org_id": "o", "agent_id": "a", "memory_id": "m", "tags": ["t"]})
    _same_as_decide(command, NOW.astimezone(timezone(timedelta(hours=-5, minutes=-30))))
    _same_as_decide(command, NOW.replace(microsecond=0))


@hsettings(max_examples=60, deadline=None)
@given(content=st.text(min_size=1, max_size=50).filter(lambda s: s.strip() and "\x00" not in s
                                                          and not any("\ud800" <= c <= "\udfff" for c in s)),
       importance=st.floats(0, 1), meta=st.dictionaries(st.text("abcé", max_size=3),
                                                        st.integers(-2**63, 2**63 - 1) | st.floats(-1e300, 1e300)
                                                        | st.booleans() | st.none(), max_size=4))
def test_direct_bytes_equal_for_any_store(content: str, importance: float, meta: dict[str, Any]) -> None:
    _same_as_decide(parse({"type": "StoreMemory", "org_id": "o", "agent_id": "a", "memory_id": "m",
                           "content": content, "importance": importance, "metadata": meta}))


def test_unrouted_types_take_the_model_path() -> None:
    command = parse({"type": "IngestSession", "org_id": "o", "agent_id": "a",
                     "transcript": [{"role": "user", "content": "hi"}]})
    assert encode_direct(command, NOW, str(uuid7())) is None
    append = CommandBus(log=None, clock=lambda: NOW).prepare(command)  # type: ignore[arg-type]
    assert decode_body(append.bodies[0], 1).type == "SessionIngested"


def test_a_batch_with_one_invalid_command_gives_each_its_own_verdict() -> None:
    good = {"type": "TagMemory", "org_id": "o", "agent_id": "a", "memory_id": "m", "tags": ["t"]}
    model = parse(good)
    parsed = parse_many([good, {"type": "TagMemory", "org_id": "o", "agent_id": "a", "memory_id": "m", "tags": []},
                         model, "not an object", {**good, "tags": ["u"]}])
    assert parsed[0] == model and parsed[2] is model
    assert isinstance(parsed[1], InvalidCommand) and "TagMemory.tags" in str(parsed[1])
    assert isinstance(parsed[3], InvalidCommand)
    assert isinstance(parsed[4], Command) and parsed[4].tags == ("u",)  # type: ignore[attr-defined]
    assert parse_many([good, model])[0] == model  # all valid: one validator call, same result
