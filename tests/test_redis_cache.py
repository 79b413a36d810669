"""The query cache: HIT/MISS, invalidation by generations, and the race with the memories projector.

The guarantee under test: once the PostgreSQL memories read model has applied event E
(its commit is visible: `wait_for` returns), no cached result computed before E is served.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from typer.testing import CliRunner

from commands import CommandBus, RecordRecall, StoreMemory, TagMemory, UntagMemory, UpdateMemory, open_bus
from ledger import Receipt, Settings, open_log
from ledger.connections import connect_redis
from ledger.events import RecordedEvent
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from projections import MemoryQuery, MemoryStore, QueryResult, open_projection
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection
from projections.redis import CachedMemoryStore, QueryCache, open_cached_store


class Crash(BaseException):
    """Stands for the projector process dying at a chosen point."""


class Pause:
    """A commit hook that holds the projector right after COMMIT, before the cache's `end`."""

    def __init__(self, crash: bool = False):
        self.committed, self.go, self.crash = threading.Event(), threading.Event(), crash

    def before_commit(self, projection: object, partition: int, events: Sequence[RecordedEvent]) -> None:
        pass

    def after_commit(self, projection: object, partition: int, events: Sequence[RecordedEvent]) -> None:
        self.committed.set()
        if self.crash:
            raise Crash()
        self.go.wait(10)


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    return settings


@pytest.fixture
def bus(migrated: Settings) -> Iterator[CommandBus]:
    yield open_bus(migrated)
    while Live.opened:
        Live.opened.pop().projection.close()


@pytest.fixture
def store(migrated: Settings) -> Iterator[CachedMemoryStore]:
    s = open_cached_store(migrated)
    yield s
    s.close()


class Live:
    """The live memories projection (with its cache hook), applying what the bus appended."""

    opened: list[Live] = []

    def __init__(self, settings: Settings):
        self.log = open_log(settings)
        self.projection = open_projection("memories", settings)
        assert isinstance(self.projection, MemoriesProjection)
        Live.opened.append(self)

    def apply_new(self, partition: int) -> None:
        after = self.projection.checkpoints().get(partition, "0-0")
        events = self.log.read(partition, after)
        self.projection.apply(partition, events, after)

    def catch_up(self) -> None:
        for p in range(self.log.partitions):
            if self.log.read(p, self.projection.checkpoints().get(p, "0-0"), count=1):
                self.apply_new(p)


def in_thread(action: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(action())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def ids(result: QueryResult) -> list[str]:
    return sorted(r["memory_id"] for r in result.rows)


def test_a_hit_returns_the_same_rows_as_the_miss(bus: CommandBus, migrated: Settings, store: CachedMemoryStore) -> None:
    expires = datetime.now(timezone.utc) + timedelta(days=3)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="likes tea", tags=("food", "drink"),
                         importance=0.7, metadata={"user_id": "u1", "n": [1, 2.5, None]}, expires_at=expires))
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m2", content="flies", tags=("travel",)))
    bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m1", user_id="u1"))
    Live(migrated).catch_up()
    q = MemoryQuery("acme", agent_id="a1")
    miss, hit = store.query(q), store.query(q)
    assert (miss.cache, hit.cache) == ("MISS", "HIT")
    assert hit.rows == miss.rows and len(hit.rows) == 2
    assert hit.rows == MemoryStore.query(store, q).rows  # and what PostgreSQL says now
    assert {type(v) for r in hit.rows for v in r.values()} == {type(v) for r in miss.rows for v in r.values()}


def test_changes_invalidate_exactly_the_scopes_they_touch(bus: CommandBus, migrated: Settings,
                                                          store: CachedMemoryStore) -> None:
    live = Live(migrated)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x", tags=("food",)))
    bus.send(StoreMemory(org_id="acme", agent_id="a2", memory_id="m2", content="y", tags=("travel",)))
    live.catch_up()
    by_agent, by_tag = MemoryQuery("acme", agent_id="a1"), MemoryQuery("acme", tags=("food",))
    whole = MemoryQuery("acme")
    for q in (by_agent, by_tag, whole):
        store.query(q)
    # A change to a2's travel memory leaves a1's and food's entries valid, not the org's
    bus.send(UpdateMemory(org_id="acme", agent_id="a2", memory_id="m2", importance=0.9))
    live.catch_up()
    assert [store.query(q).cache for q in (by_agent, by_tag, whole)] == ["HIT", "HIT", "MISS"]
    # Untagging food from m1 changes the food query: the tag it had *before* counts
    bus.send(UntagMemory(org_id="acme", agent_id="a1", memory_id="m1", tags=("food",)))
    live.catch_up()
    result = store.query(by_tag)
    assert (result.cache, ids(result)) == ("MISS", [])
    # A recall changes recall_count in the rows, so it invalidates too
    bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m1"))
    live.catch_up()
    result = store.query(by_agent)
    assert (result.cache, result.rows[0]["recall_count"]) == ("MISS", 1)
    assert store.query(by_agent).cache == "HIT"


def test_sql_run_before_a_commit_is_never_served_after_it(bus: CommandBus, migrated: Settings,
                                                         store: CachedMemoryStore) -> None:
    # Given a cold cache and a memory projected
    live = Live(migrated)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x", tags=("food",)))
    live.catch_up()
    q = MemoryQuery("acme", tags=("food",))
    sql_done, go = threading.Event(), threading.Event()

    def slow_compute(query: MemoryQuery) -> QueryResult:
        result = MemoryStore.query(store, query)  # the SQL runs now, before E...
        sql_done.set()
        go.wait(10)  # ...and the result is stored only after E is applied
        return result
    # When a reader's SQL runs before E commits and it stores its result after
    reader, out = in_thread(lambda: store.cache.query(q, slow_compute))
    sql_done.wait(10)
    receipt = bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m2", content="y", tags=("food",)))
    live.apply_new(receipt.partition)
    go.set()
    reader.join()
    # Then that reader answered what it saw, and nobody after E gets it from the cache
    assert ids(out[0]) == ["m1"]
    store.wait_for(receipt)
    after = store.query(q)
    assert (after.cache, ids(after)) == ("MISS", ["m1", "m2"])
    assert ids(store.query(q)) == ["m1", "m2"]


def test_a_commit_between_reading_generations_and_the_sql(bus: CommandBus, migrated: Settings,
                                                         store: CachedMemoryStore) -> None:
    live = Live(migrated)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x"))
    live.catch_up()
    q = MemoryQuery("acme")
    looked_up, go = threading.Event(), threading.Event()

    def late_compute(query: MemoryQuery) -> QueryResult:
        looked_up.set()  # the generations were read; E commits before the SQL runs
        go.wait(10)
        return MemoryStore.query(store, query)
    reader, out = in_thread(lambda: store.cache.query(q, late_compute))
    looked_up.wait(10)
    receipt = bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m2", content="y"))
    live.apply_new(receipt.partition)
    go.set()
    reader.join()
    assert ids(out[0]) == ["m1", "m2"]
    # It stored nothing under the old generations; the next reader misses, then hits
    assert [store.query(q).cache, store.query(q).cache] == ["MISS", "HIT"]


def test_between_commit_and_invalidation_readers_bypass_the_cache(bus: CommandBus, migrated: Settings,
                                                                   store: CachedMemoryStore) -> None:
    # Given a cached answer
    live = Live(migrated)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x"))
    live.catch_up()
    q = MemoryQuery("acme", agent_id="a1")
    assert [store.query(q).cache, store.query(q).cache] == ["MISS", "HIT"]
    # When the projector has committed E but not yet bumped the generations
    pause = Pause()
    live.projection.commit_hooks.insert(0, pause)
    receipt: Receipt = bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m2", content="y"))
    projector, out = in_thread(lambda: live.apply_new(receipt.partition))
    pause.committed.wait(10)
    # Then a reader waiting for E and querying gets E, uncached, as often as it asks
    store.wait_for(receipt, timeout=5)
    for _ in range(3):
        result = store.query(q)
        assert (result.cache, ids(result)) == ("MISS", ["m1", "m2"])
        assert result.meta["cache_reason"] == "write in flight"
    pause.go.set()
    projector.join()
    assert out == [None]
    assert [store.query(q).cache, store.query(q).cache] == ["MISS", "HIT"]


def test_a_projector_killed_after_commit_leaves_the_cache_bypassed_until_healed(
        bus: CommandBus, migrated: Settings, store: CachedMemoryStore) -> None:
    live = Live(migrated)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x"))
    live.catch_up()
    q = MemoryQuery("acme", agent_id="a1")
    store.query(q)
    # When the projector dies right after committing E (its cache `end` never runs)
    live.projection.commit_hooks.insert(0, Pause(crash=True))
    receipt = bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m2", content="y"))
    with pytest.raises(Crash):
        live.apply_new(receipt.partition)
    # Then readers see E, never the cached answer from before it
    for _ in range(3):
        result = store.query(q)
        assert (result.cache, ids(result)) == ("MISS", ["m1", "m2"])
    # And the next projector's next batch in that partition heals the scopes
    successor = Live(migrated)
    again = bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="m2"))
    assert again.partition == receipt.partition
    successor.apply_new(receipt.partition)
    assert [store.query(q).cache, store.query(q).cache] == ["MISS", "HIT"]
    assert store.query(q).rows[0]["recall_count"] == 1


def test_without_redis_queries_answer_from_postgres(bus: CommandBus, migrated: Settings,
                                                    store: CachedMemoryStore) -> None:
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x"))
    Live(migrated).catch_up()
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    down = QueryCache(unreachable, migrated.namespace, migrated.db_schema, 60)
    result = down.query(MemoryQuery("acme"), lambda q: MemoryStore.query(store, q))
    assert (result.cache, ids(result)) == ("BYPASS", ["m1"])


def test_entries_expire_after_the_ttl(bus: CommandBus, migrated: Settings) -> None:
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="x"))
    Live(migrated).catch_up()
    short = open_cached_store(migrated.model_copy(update={"cache_ttl_seconds": 7}))
    q = MemoryQuery("acme")
    short.query(q)
    client = connect_redis(migrated)
    entries = list(client.scan_iter(match=f"{{{migrated.namespace}:qc:acme}}:e:*"))
    assert len(entries) == 1 and 0 < client.ttl(entries[0]) <= 7
    short.close()


def test_cli_query_says_miss_then_hit_and_info_counts_them(bus: CommandBus, migrated: Settings) -> None:
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="m1", content="likes tea", tags=("food",)))
    bus.send(TagMemory(org_id="acme", agent_id="a1", memory_id="m1", tags=("drink",)))
    Live(migrated).catch_up()
    env = {"MEMLEDGER_REDIS_URL": str(migrated.redis_url), "MEMLEDGER_DATABASE_URL": str(migrated.database_url),
           "MEMLEDGER_NAMESPACE": migrated.namespace, "MEMLEDGER_PARTITIONS": str(migrated.partitions),
           "MEMLEDGER_ALLOW_VOLATILE": "1", "COLUMNS": "200"}

    def run(*args: str) -> str:
        cli_settings.cache_clear()
        result = CliRunner().invoke(app, list(args), env={**os.environ, **env})
        assert result.exit_code == 0, result.output
        return result.stdout
    first = orjson.loads(run("query", "memories", "--org", "acme", "--tag", "food", "--json"))
    second = orjson.loads(run("query", "memories", "--org", "acme", "--tag", "food", "--json"))
    assert (first["cache"], second["cache"]) == ("MISS", "HIT") and first["rows"] == second["rows"]
    assert "(cache: HIT)" in run("query", "memories", "--org", "acme", "--tag", "food")
    info = orjson.loads(run("info", "--json"))
    assert info["query_cache"] == {"hits": 2, "misses": 1, "orgs": 1}
    assert "2 hits, 1 misses" in run("info")
    cli_settings.cache_clear()
