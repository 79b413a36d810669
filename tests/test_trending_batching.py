"""The trending script gathers a batch in Lua tables and writes each key once at its end:
whatever the batching, the state (contents and expiry times) must be what the same events
leave applied one per batch, take-backs that remove a member and retention that deletes a
key whose expiry is already past included (see projections/lua/trending.lua)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import redis
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st

from commands import Command, CommandBus, ForgetMemory, RecordRecall, StoreMemory, TagMemory
from commands import UntagMemory
from ledger import Settings, open_log
from projections import Projector, ProjectorOptions
from projections.redis import RedisProjection, TrendingProjection
from projections.redis.trending import hour_of

from test_redis_trending import NOW

# The settings fixture is function-scoped but hypothesis reuses it across examples: each
# example works in a namespace of its own, deleted when it ends.
PROPERTY = hsettings(max_examples=40, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])

ORGS = ["acme", "globex"]
MEMORIES = [("acme", "m1"), ("acme", "m2"), ("globex", "m1")]
TAGS = ["food", "tea", "jazz"]
# Hours before NOW an event happens; with a retention of 24 hours the buckets of the last
# two are past their expiry, so writing them deletes them.
AGO = [0, 1, 3, 30, 40]
RETENTIONS = [24, 0]

State = tuple[dict[str, str], dict[str, int]]
_examples = itertools.count()


@contextmanager
def namespace(settings: Settings, client: redis.Redis, **changes: Any) -> Iterator[Settings]:
    """Settings for a namespace of one example, with one partition (so every event shares
    the batches); its keys are deleted afterwards."""
    name = f"{settings.namespace}_{next(_examples)}"
    try:
        yield settings.model_copy(update={"namespace": name, "partitions": 1, **changes})
    finally:
        for pattern in (f"{{{name}:*", f"{{{name}}}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)


def expiries(client: redis.Redis, projection: RedisProjection) -> dict[str, int]:
    """Each key of the generation (named without its label) -> the second it expires at, -1
    for never (PTTL plus the server's clock: EXPIRETIME needs Redis 7)."""
    prefix = projection.keys.prefix(0, projection.label(0))
    names = sorted(client.scan_iter(match=prefix + ":*", count=1000))
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.pttl(name)
    found = {}
    for name, ttl in zip(names, pipe.execute()):
        relative = name.decode()[len(prefix) + 1:]
        if relative != "cp" and ttl != -2:
            found[relative] = -1 if ttl == -1 else round((now_ms + ttl) / 1000)
    return found


def state(client: redis.Redis, projection: RedisProjection) -> State:
    return projection.digest(), expiries(client, projection)


# -- through the command bus and the projector ---------------------------------------------

COMMAND = st.tuples(st.sampled_from("TURRF"), st.sampled_from(MEMORIES),
                    st.lists(st.sampled_from(TAGS), max_size=3, unique=True), st.sampled_from(AGO))


def commands(drawn: list[Any]) -> Iterator[tuple[int, Command]]:
    """(hours ago, command) for each drawn one. A memory's first command stores it (anything
    else would be refused and append nothing); those after its forget are refused."""
    stored = set()
    for kind, (org, memory), tags, ago in drawn:
        ids = {"org_id": org, "agent_id": "a1", "memory_id": memory}
        if (org, memory) not in stored:
            stored.add((org, memory))
            yield ago, StoreMemory(**ids, content="x", tags=tuple(tags))
        elif kind in "TU":
            change = TagMemory if kind == "T" else UntagMemory
            yield ago, change(**ids, tags=tuple(tags or TAGS[:1]))
        else:
            yield ago, RecordRecall(**ids) if kind == "R" else ForgetMemory(**ids)


def hours_ago(ago: int) -> Callable[[], datetime]:
    return lambda: NOW - timedelta(hours=ago)


def send(settings: Settings, drawn: list[Any]) -> None:
    log = open_log(settings)
    for ago, command in commands(drawn):
        CommandBus(log, None, clock=hours_ago(ago)).send_many([command])
    log.close()


def projected(settings: Settings, client: redis.Redis, label: str, batch: int) -> State:
    """The state of generation `label` after projecting the whole log in batches of `batch`."""
    log, projection = open_log(settings), TrendingProjection.open(settings, label)
    try:
        Projector(log, projection, None, ProjectorOptions(batch=batch)).run(until_caught_up=True)
        return state(client, projection)
    finally:
        projection.close()
        log.close()


@PROPERTY
# Stored in an hour past its expiry and recalled now, in one batch: the old hour must not
# stay in the memory's contributions hash (one per batch, its expiry deleted the hash)
@example(drawn=[("T", ("acme", "m1"), ["food"], 30), ("R", ("acme", "m1"), [], 0)], retention=24)
@given(drawn=st.lists(COMMAND, min_size=8, max_size=20), retention=st.sampled_from(RETENTIONS))
def test_projected_commands_give_the_same_state_whatever_the_batching(
        settings: Settings, redis_client: redis.Redis, drawn: list[Any], retention: int) -> None:
    with namespace(settings, redis_client, trending_retention_hours=retention) as example:
        # Given commands at various event hours
        send(example, drawn)
        # When they are projected one event per batch, and in batches of 3 and of 1000
        single = projected(example, redis_client, "single", 1)
        batched = [projected(example, redis_client, label, batch)
                   for label, batch in (("three", 3), ("all", 1000))]
        # Then every generation holds the state of the one-per-batch projection
        assert batched == [single, single]


# -- straight into the script, with operations no command sequence produces ----------------

OPERATION = st.tuples(st.sampled_from("STURF"), st.sampled_from(["m1", "m2"]),
                      st.sampled_from(ORGS), st.sampled_from([0, 1, 30]),
                      st.lists(st.sampled_from(TAGS[:2]), max_size=2))


def arguments(operations: list[Any]) -> list[Any]:
    """The script's operation arguments. An operation's org is drawn apart from its memory,
    so a take-back may hit a bucket the memory never added to, and go below zero there."""
    hour = hour_of(NOW)
    args: list[Any] = []
    for op, memory, org, ago, tags in operations:
        arg = f"a1/{memory}" if op in "RF" else ",".join(tags)
        args += [op, f"acme/a1/{memory}", org, hour - ago, arg]
    return args


def apply_in_batches(projection: TrendingProjection, operations: list[Any], size: int) -> None:
    projection.ensure_current()
    for n, start in enumerate(range(0, len(operations), size)):
        args = [projection.retention_s, *arguments(operations[start:start + size])]
        projection.write(0, args, f"{n}-1" if n else "0-0", f"{n + 1}-1")


@hsettings(max_examples=150, deadline=None, database=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
# globex's bucket goes below zero (the member is removed), then a recall counts one again
@example(operations=[("R", "m1", "acme", 0, []), ("F", "m1", "globex", 0, []),
                     ("R", "m1", "globex", 0, [])], retention=0, size=1000)
@given(operations=st.lists(OPERATION, min_size=8, max_size=30),
       retention=st.sampled_from(RETENTIONS), size=st.sampled_from([3, 1000]))
def test_any_operations_give_the_same_state_whatever_the_batching(
        settings: Settings, redis_client: redis.Redis, operations: list[Any], retention: int,
        size: int) -> None:
    with namespace(settings, redis_client) as example:
        single, batched = (TrendingProjection(redis_client, example.namespace, 1, label,
                                              retention_hours=retention)
                           for label in ("single", "batched"))
        apply_in_batches(single, operations, 1)
        apply_in_batches(batched, operations, size)
        assert state(redis_client, batched) == state(redis_client, single)
