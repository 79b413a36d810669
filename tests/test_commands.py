"""Commands: invalid ones never reach the log; decide()/check()/fold() predict the real append."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from commands import CommandBus, SubjectState, check, decide, fold, open_bus, parse
from commands.models import MAX_CONTENT, MAX_METADATA_BYTES, MAX_TAGS
from ledger import Receipt, Settings
from ledger.errors import CommandError, InvalidCommand
from ledger.ids import uuid7

# The bus fixture is function-scoped but hypothesis reuses it across examples: that is
# safe here because each example either appends nothing or uses its own memory id.
PROPERTY = hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def bus(settings: Settings) -> Iterator[CommandBus]:
    bus = open_bus(settings)
    yield bus
    bus.log.client.close()


def stream_lengths(bus: CommandBus) -> list[int]:
    return [bus.log.length(p) for p in range(bus.log.partitions)]


# -- invalid commands ------------------------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "StoreMemory": {"content": "likes tea", "memory_id": "m1"},
    "UpdateMemory": {"memory_id": "m1", "importance": 0.3},
    "TagMemory": {"memory_id": "m1", "tags": ["drinks"]},
    "UntagMemory": {"memory_id": "m1", "tags": ["drinks"]},
    "ForgetMemory": {"memory_id": "m1"},
    "RecordRecall": {"memory_id": "m1"},
    "IngestSession": {"transcript": [{"role": "user", "content": "hi"}]},
}
ID_FIELDS = {"StoreMemory": ["org_id", "agent_id", "memory_id", "session_id"],
             "RecordRecall": ["org_id", "agent_id", "memory_id", "user_id"],
             "IngestSession": ["org_id", "agent_id", "session_id", "user_id"]}

SAFE = st.text("abcXYZ019_.:-", max_size=10)
ODD_CHARS = [" ", "\\", "é", "中", "\n", "\t", "#", "@", "\u200b", "\U0001f600"]
BAD_CHAR = st.sampled_from(["/", *ODD_CHARS])
BAD_TAG_CHAR = st.sampled_from(ODD_CHARS)  # a tag may contain "/", e.g. "lang/python"


def command(kind: str, **changes: Any) -> dict[str, Any]:
    return {"type": kind, "org_id": "acme", "agent_id": "a1", **VALID[kind], **changes}


@st.composite
def bad_ids(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    kind = draw(st.sampled_from(sorted(ID_FIELDS)))
    field = draw(st.sampled_from(ID_FIELDS[kind]))
    value = draw(st.builds(lambda a, c, b: "x" + a + c + b, SAFE, BAD_CHAR, SAFE) | st.just("") | st.just("x" * 129))
    return command(kind, **{field: value}), field


@st.composite
def bad_tags(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    kind = draw(st.sampled_from(["StoreMemory", "TagMemory", "UntagMemory"]))
    bad = draw(st.builds(lambda a, c: "t" + a + c, SAFE, BAD_TAG_CHAR) | st.just("t" * 65) | st.just("-leading"))
    tags = draw(st.lists(st.just("ok"), max_size=3)) + [bad]
    many = [f"tag{i}" for i in range(MAX_TAGS + draw(st.integers(1, 5)))]
    return command(kind, tags=draw(st.sampled_from([tags, many]))), "tags"


@st.composite
def bad_values(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    importance = draw(st.floats(max_value=-1e-9) | st.floats(min_value=1 + 1e-9) | st.just(float("nan")))
    naive = draw(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1))).isoformat()
    extra = draw(st.text("abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8).filter(lambda s: s not in {"type", "tags"}))
    blob = "x" * (MAX_METADATA_BYTES + draw(st.integers(0, 1000)))
    choices = [
        (command("StoreMemory", content="c" * (MAX_CONTENT + draw(st.integers(1, 100)))), "content"),
        (command("StoreMemory", content=" \n\t "), "content"),
        (command(draw(st.sampled_from(["StoreMemory", "UpdateMemory"])), importance=importance), "importance"),
        (command(draw(st.sampled_from(["StoreMemory", "UpdateMemory"])), expires_at=naive), "expires_at"),
        (command(draw(st.sampled_from(sorted(VALID))), **{extra + "_x": 1}), extra + "_x"),
        (command("IngestSession", transcript=[]), "transcript"),
        (command(draw(st.sampled_from(["StoreMemory", "UpdateMemory", "IngestSession"])), metadata={"k": blob}),
         "metadata"),
        (command("UpdateMemory", importance=None), "UpdateMemory"),  # an update that changes nothing
    ]
    case: tuple[dict[str, Any], str] = draw(st.sampled_from(choices))
    return case


INVALID = bad_ids() | bad_tags() | bad_values()


@PROPERTY
@given(cases=st.lists(INVALID, min_size=1, max_size=8))
def test_invalid_commands_are_rejected_and_append_nothing(bus: CommandBus, cases: list[tuple[dict[str, Any], str]]) -> None:
    outcomes = bus.send_many([raw for raw, _ in cases])

    assert len(outcomes) == len(cases)
    for outcome, (raw, field) in zip(outcomes, cases):
        assert isinstance(outcome, InvalidCommand), (raw, outcome)
        assert field in str(outcome), f"the message does not name {field!r}: {outcome}"
    assert stream_lengths(bus) == [0] * bus.log.partitions


def test_invalid_command_message_names_type_and_field() -> None:
    with pytest.raises(InvalidCommand, match=r"^StoreMemory\.importance: Input should be less than or equal to 1"):
        parse(command("StoreMemory", importance=1.5))


def test_unknown_command_type_is_invalid() -> None:
    with pytest.raises(InvalidCommand, match="Teleport"):
        parse({"type": "Teleport", "org_id": "acme", "agent_id": "a1"})


# -- decide() predicts the append script -------------------------------------------------

CHANGES: dict[str, Callable[[int], dict[str, Any]]] = {
    "store": lambda n: {"type": "StoreMemory", "content": f"fact {n}"},
    "update": lambda n: {"type": "UpdateMemory", "content": f"revised {n}"},
    "tag": lambda n: {"type": "TagMemory", "tags": [f"t{n}"]},
    "untag": lambda n: {"type": "UntagMemory", "tags": [f"t{n}"]},
    "forget": lambda n: {"type": "ForgetMemory", "reason": "asked to"},
    "recall": lambda n: {"type": "RecordRecall", "query": "tea?"},
}
STEPS = st.sampled_from(sorted(CHANGES))


def step_command(step: str, memory_id: str, expected: int | None, n: int) -> dict[str, Any]:
    return {"org_id": "acme", "agent_id": "a1", "memory_id": memory_id, "expected_version": expected,
            **CHANGES[step](n)}


def predict(commands: list[dict[str, Any]]) -> list[type[CommandError] | int]:
    """Fold decide()/check()/fold() over the commands: an error class or the receipt's version."""
    state, predicted = SubjectState(), []
    for raw in commands:
        cmd = parse(raw)
        decision = decide(cmd, datetime.now(timezone.utc), uuid7)
        error = check(state, decision.mode, cmd.expected_version)
        if error is None:
            state = fold(state, decision.mode, len(decision.events))
        predicted.append(type(error) if error is not None else state.version)
    return predicted


def observed(outcomes: list[Receipt | CommandError]) -> list[type[CommandError] | int]:
    return [o.subject_version if isinstance(o, Receipt) else type(o) for o in outcomes]


@PROPERTY
@given(plan=st.lists(st.tuples(STEPS, st.none() | st.integers(0, 5)), min_size=1, max_size=14),
       batched=st.booleans())
def test_decide_predicts_the_append_outcome(bus: CommandBus, plan: list[tuple[str, int | None]], batched: bool) -> None:
    memory_id = f"m{uuid.uuid4().hex[:12]}"
    commands = [step_command(step, memory_id, expected, n) for n, (step, expected) in enumerate(plan)]

    outcomes = bus.send_many(commands) if batched else [_send_one(bus, c) for c in commands]

    assert observed(outcomes) == predict(commands)


def _send_one(bus: CommandBus, raw: dict[str, Any]) -> Receipt | CommandError:
    return bus.send_many([raw])[0]


def code(error: CommandError | None) -> str | None:
    return None if error is None else error.code


def test_check_rules_in_order() -> None:
    live, ended = SubjectState(3, "live"), SubjectState(4, "ended")

    assert code(check(SubjectState(), "create", None)) is None
    assert code(check(live, "create", None)) == "exists"
    assert code(check(SubjectState(), "change", None)) == "unknown_subject"
    assert code(check(ended, "touch", None)) == "forgotten"
    assert code(check(ended, "change", 1)) == "version_conflict"  # the version is checked first
    assert fold(live, "touch") == live
    assert fold(live, "end") == SubjectState(4, "ended")
