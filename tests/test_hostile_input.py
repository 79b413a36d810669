"""Hostile input at the edge: whatever is sent, it is refused with one clear line, costs no
other command its place, and nothing accepted can later fail in a projector or a replay.

Each test here failed before the fix of issue 12 (findings 1a and 3, and the "Also" list).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from commands import CommandBus, models, open_bus, wire
from commands.models import StoreMemory
from ledger import Receipt, Settings
from ledger.connections import database_url
from ledger.errors import CommandError, InvalidCommand, RateLimited
from memledger.cli.agents import read_commands, send_batch
from projections import PROJECTIONS
from projections.postgres import migrate
from replay.verify import verify
from test_replay_helpers import env, project_all

ORG, AGENT = "acme", "bot"


@pytest.fixture
def bus(settings: Settings) -> Iterator[CommandBus]:
    bus = open_bus(settings)
    yield bus
    bus.log.client.close()


def lengths(bus: CommandBus) -> list[int]:
    return [bus.log.length(p) for p in range(bus.log.partitions)]


def store(memory_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "StoreMemory", "org_id": ORG, "agent_id": AGENT, "memory_id": memory_id, "content": "x", **extra}


def of(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "org_id": ORG, "agent_id": AGENT, **fields}


# -- finding 1a: every string of every command, internal ones included ----------------

NUL = "gdpr\x00"
UNSTORABLE = [
    of("ForgetMemory", memory_id="m1", reason=NUL),
    of("RecordRecall", memory_id="m1", query=NUL),
    store("m9", actor=NUL),
    store("m9", idempotency_key=NUL),
    store("m9", metadata={NUL: 1}),
    store("m9", metadata={"a": [NUL]}),
    store("m9", content="lone \ud800 surrogate"),
    store("m9", actor="\udfff"),
    of("IngestSession", transcript=[{"role": "user", "content": NUL}]),
    of("IngestSession", transcript=[{"role": "user", "content": "hi", "at": "2026-01-01T00:00:00"}]),
    of("SummarizeSession", session_id="s1", summary="ok", extractor=NUL),
    of("MarkSessionFailed", session_id="s1", error=NUL, attempts=1),
    of("RetrySession", session_id="s1", ingest_event_id="01890000-0000-7000-8000-000000000000",
       ingest_stream_id="1-0", reason=NUL),
]


@pytest.mark.parametrize("command", UNSTORABLE, ids=lambda c: c["type"])
def test_text_no_read_model_can_hold_is_refused_in_every_field(settings: Settings, command: dict[str, Any]) -> None:
    # Given a bus that may send internal commands too (they are checked the same way)
    system = open_bus(settings, system=True)
    system.send(store("m1"))
    before = lengths(system)
    # When a command carries NUL, a lone surrogate or a naive timestamp anywhere
    [outcome] = system.send_many([command])
    # Then it is refused, saying where, and nothing is appended
    assert isinstance(outcome, InvalidCommand), outcome
    assert command["type"] in str(outcome)
    assert lengths(system) == before


LAX = [
    (store("m1", importance=True), "importance"),
    (store("m1", importance="0.5"), "importance"),
    (store("m1", metadata={"n": 10**30}), "64-bit"),
    (store("m1", metadata={"n": float("inf")}), "finite"),
    (store("m1", expires_at=1_900_000_000), "ISO 8601"),
    (of("UpdateMemory", memory_id="m1", content="y", expected_version=1.0), "expected_version"),
    (of("UpdateMemory", memory_id="m1", content="y", clear_expiry=1), "clear_expiry"),
]


@pytest.mark.parametrize(("command", "said"), LAX, ids=[said for _, said in LAX])
def test_lax_coercion_is_refused(bus: CommandBus, command: dict[str, Any], said: str) -> None:
    [outcome] = bus.send_many([command])
    assert isinstance(outcome, InvalidCommand) and said in str(outcome), outcome


@pytest.mark.parametrize(("text", "said"), [
    (b'{"type": "StoreMemory", "type": "ForgetMemory"}', "appears twice"),
    (b'{"importance": NaN}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b'{"content": "caf\xe9"}', "UTF-8"),
    (b"[" * 5000, "nested"),
    (b'{"a": ' + b"9" * 5000 + b"}", "digit"),
    (b'{"a": ', "not valid JSON"),
])
def test_json_text_is_read_strictly(text: bytes, said: str) -> None:
    with pytest.raises(InvalidCommand, match=said):
        wire.loads(text)


# -- finding 3: one outcome per command, never an exception ----------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deep_metadata_costs_no_other_command_its_place(bus: CommandBus) -> None:
    outcomes = bus.send_many([store("m1"), store("m2", metadata=nested(300)), store("m3")])
    assert [type(o).__name__ for o in outcomes] == ["Receipt", "InvalidCommand", "Receipt"]
    assert "nested more than" in str(outcomes[1])


def test_cli_reports_every_line_and_never_a_traceback(settings: Settings) -> None:
    lines = [json.dumps(store("m1")).encode(), b'{"type": "StoreMemory", "content": "caf\xe9"}',
             json.dumps(store("m2", metadata=nested(300))).encode(), b"[[[[", json.dumps(store("m3")).encode()]
    result = subprocess.run([sys.executable, "-m", "memledger", "send", "--json"], input=b"\n".join(lines),
                            env=env(settings), capture_output=True, timeout=60)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    outs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["line"], o["ok"]) for o in outs] == [(1, True), (2, False), (3, False), (4, False), (5, True)]
    assert result.returncode == 2


def test_session_ingest_takes_the_same_input_and_reports_per_line(settings: Settings) -> None:
    # The same reader as `send`: a bad line gets its own outcome, the good ones are appended.
    migrate.upgrade(settings)
    good = {"org_id": ORG, "agent_id": AGENT, "session_id": "s1", "transcript": [{"role": "user", "content": "hi"}]}
    lines = [json.dumps(good).encode(), b"\xff", json.dumps(store("m1")).encode()]
    result = subprocess.run([sys.executable, "-m", "memledger", "session", "ingest", "--json"],
                            input=b"\n".join(lines), env=env(settings), capture_output=True, timeout=60)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    outs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["line"], o["ok"]) for o in outs] == [(1, True), (2, False), (3, False)]
    assert "queue_position" in outs[0] and "IngestSession" in outs[2]["message"]


# -- "Also": a retry is never rate-limited -----------------------------------------------


def test_a_retry_gets_its_original_receipt_even_over_the_rate_limit(settings: Settings) -> None:
    limited = open_bus(settings.model_copy(update={"rate_per_second": 0.001, "rate_burst": 1}))
    first = limited.send(StoreMemory(org_id=ORG, agent_id=AGENT, content="x", idempotency_key="k1"))
    [other] = limited.send_many([store("m2")])
    assert isinstance(other, RateLimited)  # the org is over its rate now
    [again] = limited.send_many([store("ignored", idempotency_key="k1")])
    assert isinstance(again, Receipt) and again.duplicate
    assert (again.stream_id, again.event_ids) == (first.stream_id, first.event_ids)


# -- the property: arbitrary commands, then every read model agrees with a replay -------

ODD = st.sampled_from(["\x00", "\ud800", "\udfff", "\x1f", "\x7f", "\u202e", "\ufeff", "\uffff", "é", "😀",
                       "\\", '"', "\n", "{", "a"])
TEXT = st.one_of(st.text(max_size=12), st.lists(ODD, max_size=6).map("".join))
NUMBER = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0, 1, 0.5, -1, 2**63 - 1, 2**63, -(2**63) - 1]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSONISH = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(TEXT, inner, max_size=3)), max_leaves=8)
DEEP = st.integers(0, 300).map(nested)
IDS = st.sampled_from(["m1", "m2", "m3", "s1"])
TIMES = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "1999-01-01T00:00:00Z", "nope", 5])


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(None), strategy)


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "org_id": st.sampled_from([ORG, ORG, "other", "a\x00", ""]), "agent_id": st.sampled_from([AGENT, "b2"]),
    "memory_id": IDS, "session_id": IDS, "content": st.one_of(TEXT, st.just("remember this")),
    "summary": TEXT, "reason": TEXT, "query": TEXT, "actor": TEXT, "idempotency_key": TEXT, "error": TEXT,
    "extractor": TEXT, "importance": st.one_of(NUMBER, SCALAR), "metadata": st.one_of(JSONISH, DEEP),
    "tags": st.lists(st.one_of(TEXT, st.just("billing")), max_size=3), "expires_at": TIMES,
    "expected_version": st.one_of(st.integers(0, 3), SCALAR), "clear_expiry": st.one_of(st.booleans(), SCALAR),
    "attempts": st.one_of(st.integers(1, 3), SCALAR), "retention_days": st.one_of(st.integers(0, 9), SCALAR),
    "transcript": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "robot"]), "content": TEXT}, optional={"at": TIMES}),
        max_size=3),
    "ingest_event_id": st.uuids().map(str), "ingest_stream_id": st.just("1-0"), "user_id": maybe(IDS),
    "memory_ids": st.lists(IDS, max_size=2),
}
# A valid command of each type; an example changes none, some or all of its fields.
BASE: dict[str, dict[str, Any]] = {
    "StoreMemory": {"memory_id": "m1", "content": "remember this", "tags": ["billing"]},
    "UpdateMemory": {"memory_id": "m1", "content": "changed"},
    "TagMemory": {"memory_id": "m1", "tags": ["vip"]},
    "UntagMemory": {"memory_id": "m1", "tags": ["billing"]},
    "ForgetMemory": {"memory_id": "m2", "reason": "asked to"},
    "RecordRecall": {"memory_id": "m1", "query": "what"},
    "IngestSession": {"session_id": "s1", "transcript": [{"role": "user", "content": "I like tea"}]},
    "SummarizeSession": {"session_id": "s1", "summary": "likes tea"},
    "MarkSessionFailed": {"session_id": "s1", "error": "boom", "attempts": 1},
    "RetrySession": {"session_id": "s1", "ingest_event_id": "01890000-0000-7000-8000-000000000000",
                     "ingest_stream_id": "1-0"},
    "ExpireMemory": {"memory_id": "m3", "expires_at": "2026-01-01T00:00:00Z"},
    "PurgeTranscript": {"session_id": "s1", "retention_days": 1},
}


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(BASE)))
    own = sorted(set(FIELDS) & set(getattr(models, kind).model_fields))
    others = draw(st.sampled_from([own, own, own, sorted(FIELDS)]))  # now and then a field it does not have
    changed = draw(st.sets(st.sampled_from(others), max_size=draw(st.sampled_from([0, 0, 1, 1, 2, 5]))))
    base = {"type": kind, "org_id": ORG, "agent_id": AGENT, **BASE[kind]}
    return {**base, **{name: draw(FIELDS[name]) for name in changed}}


def as_line(command: dict[str, Any]) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes, and NaN / Infinity as such: the
    # reader must refuse them, not the writer.
    return json.dumps(command, ensure_ascii=True).encode()


PROPERTY = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])


def test_arbitrary_commands_leave_read_models_a_replay_agrees_with(settings: Settings) -> None:
    migrate.upgrade(settings)
    agent_bus, system_bus = open_bus(settings), open_bus(settings, system=True)

    @PROPERTY
    @given(batch=st.lists(commands(), min_size=1, max_size=6), system=st.booleans(), via_cli=st.booleans(),
           junk=st.lists(st.binary(max_size=20), max_size=2))
    def send(batch: list[dict[str, Any]], system: bool, via_cli: bool, junk: list[bytes]) -> None:
        bus = system_bus if system else agent_bus
        before = sum(lengths(bus))
        if via_cli:  # the CLI's own reader and sender, in process
            items = list(read_commands([as_line(c) for c in batch] + junk))
            outcomes = [outcome for _, outcome in send_batch(bus, items)]
            assert len(outcomes) == len(items)
        else:
            outcomes = bus.send_many(batch)
            assert len(outcomes) == len(batch)
        appended = sum(len(o.event_ids) for o in outcomes if isinstance(o, Receipt) and not o.duplicate)
        assert all(isinstance(o, (Receipt, CommandError)) for o in outcomes)
        assert sum(lengths(bus)) - before == appended  # a rejected command appended nothing

    send()
    # Every read model, projected from what was accepted, equals a replay of the ledger.
    project_all(settings)
    for name in PROJECTIONS:
        result = verify(settings, name)
        assert result.agree, (name, result.differences[:5])
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
