"""Every Lua script call, and every key builder of a partition, stays on one Redis Cluster slot.

A script on a cluster may only touch keys of one slot: those it is given (KEYS) and those it
builds from a key prefix it is given (ARGV values such as `{ns:pN}:rm:trending:v1`). The slot
is computed here with redis-py's CRC16 (`key_slot`); no cluster is needed. The script test
runs the real code paths on the loopback Redis with a spy on `LuaScript.run_many` (the calls
still run), and requires a recorded call of EVERY .lua file the packages ship: a new script,
or a new key that leaves its partition's hash tag, fails here.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from importlib.resources import files
from typing import Any

import pytest
from redis.crc import key_slot

from commands import AppendMessage, open_bus
from ledger import Settings, open_log
from ledger.partitions import Keys
from ledger.scripts import Call, LuaScript
from memledger.app import App
from projections import MemoryQuery, run_projection
from projections.lease import Leases
from projections.redis.cache import entry_prefix, gen_key, intent_key
from projections.redis.keys import ModelKeys
from projections.redis.recent_messages import RecentMessagesCache
from projections.redis.trending import TrendingProjection

from test_replay_helpers import populate

#: Packages whose `lua/` folders hold scripts.
SCRIPT_PACKAGES = ("ledger", "projections")
Recorded = tuple[str, Sequence[str], Sequence[Any]]


def all_scripts() -> set[str]:
    return {f.name for package in SCRIPT_PACKAGES for f in (files(package) / "lua").iterdir()
            if f.name.endswith(".lua")}


def slot(key: str | bytes) -> int:
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def key_prefixes(args: Sequence[Any], namespace: str) -> list[str]:
    """The ARGV values a script builds keys from: those starting with one of the namespace's tags."""
    texts = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in args]
    return [t for t in texts if t.startswith("{" + namespace)]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Recorded]]:
    calls: list[Recorded] = []
    real = LuaScript.run_many

    def spy(self: LuaScript, batch: Iterable[Call]) -> list[Any]:
        batch = list(batch)  # run_many takes an iterable (the command bus streams a generator)
        calls.extend((self.name, list(keys), list(args)) for keys, args in batch)
        return real(self, batch)

    monkeypatch.setattr(LuaScript, "run_many", spy)
    yield calls


def exercise_every_script(settings: Settings) -> None:
    """Drive the code paths that run each script: commands, every projector, the readers."""
    log = populate(settings, 200)  # append, rate_limit, every batch script, cache_invalidate
    bus = open_bus(settings)
    bus.send(AppendMessage(org_id="org0", agent_id="agent0", session_id="s1", role="user", content="hi"))
    run_projection(settings, "recent_messages", until_caught_up=True)
    with App.open(settings) as app:
        app.query(MemoryQuery("org0"))  # cache_lookup
        app.trending("org0", hours=2)  # trending_top
        app.recent_messages("org0", "s1", agent="agent0")  # recent_read (and refill on a miss)
    p = log.partition_of("org0", "agent0")
    cache = RecentMessagesCache.open(log.client, settings)
    cache.refill(p, "v1", "org0/agent0/s1", 1, [b"1|{}"])  # recent_refill
    leases = Leases(log, "trending", 1000)
    leases.take([p])
    leases.release([p])  # lease
    trending = TrendingProjection.open(settings)
    after = trending.checkpoints().get(p, "0-0")
    head = log.head(p) or "0-0"
    trending.dead_letter(p, head, after, None, None, "a test's letter", 1)  # rm_dead_letter
    trending.close()
    log.count_after(p, "0-0", 10)  # count
    log.trim(p, "0-1")  # trim


def test_every_script_call_touches_one_slot(settings: Settings, recorded: list[Recorded]) -> None:
    # Given every script the packages ship, run by the code paths that use it
    exercise_every_script(settings)
    # Then each script was called, and each call's keys and key prefixes share one slot
    assert {name for name, _, _ in recorded} == all_scripts()
    for name, keys, args in recorded:
        slots = {slot(k) for k in [*keys, *key_prefixes(args, settings.namespace)]}
        assert keys and len(slots) == 1, f"{name} touches {len(slots)} slots: {keys} {args[:6]}"


def test_the_key_prefixes_a_script_extends_carry_the_partitions_tag(settings: Settings,
                                                                    recorded: list[Recorded]) -> None:
    """A prefix only keeps the slot if the hash tag comes first: `{ns:pN}:rm:...`, never `x{...}`."""
    exercise_every_script(settings)
    for name, keys, args in recorded:
        for prefix in key_prefixes(args, settings.namespace):
            assert prefix.index("}") < prefix.find(":", prefix.index("}")), (name, prefix)
            assert slot(prefix + ":anything") == slot(keys[0]), (name, prefix)


def partition_builders(obj: object) -> list[str]:
    """The public methods of a key-layout object that take a partition."""
    return [name for name, member in inspect.getmembers(obj, inspect.ismethod)
            if not name.startswith("_") and "partition" in inspect.signature(member).parameters]


@pytest.mark.parametrize("namespace", ["ml", "t1a2b3c4d5", "a:b"])
def test_every_key_builder_of_a_partition_stays_on_the_partitions_slot(namespace: str) -> None:
    keys, model = Keys(namespace), ModelKeys(namespace, "trending")
    builders = {"Keys": partition_builders(keys), "ModelKeys": partition_builders(model)}
    assert {"stream", "subjects", "trimmed", "idempotency", "tag"} <= set(builders["Keys"])
    assert {"pointer", "prefix", "checkpoint", "dead"} <= set(builders["ModelKeys"])
    samples: dict[str, Any] = {"org_id": "acme", "agent_id": "a1", "key": "k{1}", "label": "v1"}
    for p in range(16):
        expected = slot(keys.tag(p))
        for owner in (keys, model):
            for name in partition_builders(owner):
                method = getattr(owner, name)
                extra = {k: samples[k] for k in inspect.signature(method).parameters if k != "partition"}
                assert slot(method(p, **extra)) == expected, (type(owner).__name__, name, p)
    # Slots differ across partitions (16 partitions over 16384 slots: collisions would be bad luck)
    assert len({slot(keys.tag(p)) for p in range(16)}) > 12


def test_keys_outside_partitions_are_one_slot_per_script_call() -> None:
    """Keys that belong to no partition each carry their own tag: one org's cache (its
    generations and entries share `{ns:qc:<org>}`), one org's rate bucket."""
    assert slot(gen_key("ml", "acme")) == slot(entry_prefix("ml", "acme", "q1") + ":g1,g2")
    assert Keys("ml").rate("acme").startswith("{") and Keys("ml").rate("acme").endswith("}")
    assert intent_key("ml", "s", 3).startswith("{ml:qc}")


def test_a_call_on_two_partitions_is_refused_on_a_cluster_before_it_is_sent(cluster_settings: Settings) -> None:
    log = open_log(cluster_settings)
    with pytest.raises(Exception, match="one slot"):
        log.script("lease.lua", package="projections").run(
            [log.partition_key(0, "lease:x"), log.partition_key(1, "lease:x")], ["take", "t", 1000])
    log.close()
