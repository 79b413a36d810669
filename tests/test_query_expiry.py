"""Queries never return a memory past its `expires_at`, even before the expiry job's event arrives.

The memories read model keeps an expired row until a `MemoryExpired` event is projected
(the projection reads no clock); the query API hides it from the moment it expires, and
the Redis query cache never serves it from an entry stored while it was live.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from commands import CommandBus, StoreMemory, open_bus
from ledger import Settings
from ledger.connections import connect_redis, database_url
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from projections import MemoryQuery, MemoryStore, NotFound, open_memory_store, run_projection
from projections.postgres import migrate
from projections.redis import CachedMemoryStore, open_cached_store

SOON = timedelta(seconds=1.5)  # long enough to query a memory before it expires, short enough to wait for


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    migrate.upgrade(settings)
    return settings


@pytest.fixture
def bus(migrated: Settings) -> CommandBus:
    return open_bus(migrated)


@pytest.fixture
def plain(migrated: Settings) -> Iterator[MemoryStore]:
    store = open_memory_store(migrated)
    yield store
    store.close()


@pytest.fixture
def cached(migrated: Settings) -> Iterator[CachedMemoryStore]:
    store = open_cached_store(migrated)
    yield store
    store.close()


def _store(bus: CommandBus, memory_id: str, expires_at: datetime | None, agent: str = "a1") -> None:
    bus.send(StoreMemory(org_id="acme", agent_id=agent, memory_id=memory_id, content=f"about {memory_id}",
                         tags=("t",), expires_at=expires_at))


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["memory_id"] for r in rows]


def _sleep_past(at: datetime) -> None:
    time.sleep(max(0.0, (at - datetime.now(timezone.utc)).total_seconds()) + 0.1)


def _cli(settings: Settings, *args: str) -> Any:
    env = {"MEMLEDGER_REDIS_URL": str(settings.redis_url), "MEMLEDGER_DATABASE_URL": str(settings.database_url),
           "MEMLEDGER_NAMESPACE": settings.namespace, "MEMLEDGER_PARTITIONS": str(settings.partitions),
           "MEMLEDGER_ALLOW_VOLATILE": "1", "COLUMNS": "200"}
    cli_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env={**os.environ, **env})
    finally:
        cli_settings.cache_clear()


def test_an_expired_memory_leaves_every_query_before_its_expiry_event(
        bus: CommandBus, migrated: Settings, plain: MemoryStore, cached: CachedMemoryStore) -> None:
    # Given (newest last) a lasting memory, one expiring tomorrow, and a brief one expiring in a second or two
    _store(bus, "lasting", None)
    _store(bus, "later", datetime.now(timezone.utc) + timedelta(days=1))
    expires = datetime.now(timezone.utc) + SOON
    _store(bus, "brief", expires)
    for projection in ("memories", "archive"):  # as_of folds the archive
        run_projection(migrated, projection, until_caught_up=True)
    newest_two = MemoryQuery("acme", limit=2)
    by_agent, by_tag = MemoryQuery("acme", agent_id="a1"), MemoryQuery("acme", tags=("t",))
    # When it is queried before it expires, it is there, and the cache holds it
    assert _ids(plain.query(newest_two).rows) == ["brief", "later"]
    for q in (newest_two, by_agent, by_tag):
        assert cached.query(q).cache == "MISS"
        hit = cached.query(q)
        assert (hit.cache, _ids(hit.rows)[0]) == ("HIT", "brief")
    assert plain.get("acme", "brief")["memory_id"] == "brief"
    assert [(s["live_memories"], s["expired"]) for s in plain.agent_stats("acme")] == [(3, 0)]
    before = expires - SOON / 3
    # Then once it expires (no expiry job ran: its row is still in the read model)
    _sleep_past(expires)
    still: Any = plain.conn.execute("SELECT count(*) AS n FROM memories").fetchone()
    assert still == {"n": 3}
    # ... no query returns it, with or without the cache; the next memory shifts into the limit
    assert _ids(plain.query(newest_two).rows) == ["later", "lasting"]
    assert _ids(cached.query(newest_two).rows) == ["later", "lasting"]
    assert _ids(cached.query(by_agent).rows) == ["later", "lasting"]
    assert _ids(cached.query(by_tag).rows) == ["later", "lasting"]
    with pytest.raises(NotFound, match="expired"):
        plain.get("acme", "brief")
    # ... the agent's statistics count it as expired
    assert [(s["live_memories"], s["expired"]) for s in plain.agent_stats("acme")] == [(2, 1)]
    # ... while what the agent knew before it expired still includes it
    assert _ids(plain.as_of("acme", "a1", before)) == ["brief", "later", "lasting"]
    assert _ids(plain.as_of("acme", "a1", datetime.now(timezone.utc))) == ["later", "lasting"]
    assert _ids(plain.as_of("acme", "a1", datetime.now(timezone.utc), by_tag)) == ["later", "lasting"]
    # ... and the analysts' commands agree
    shown = _cli(migrated, "query", "memories", "--org", "acme", "--json")
    assert _ids(orjson.loads(shown.output)["rows"]) == ["later", "lasting"]
    show = _cli(migrated, "memory", "show", "brief", "--org", "acme", "--json")
    assert isinstance(show.exception, NotFound)
    then = _cli(migrated, "query", "memories", "--org", "acme", "--agent", "a1", "--as-of", before.isoformat(),
                "--json")
    assert _ids(orjson.loads(then.output)["rows"]) == ["brief", "later", "lasting"]


def test_a_cache_entry_lives_no_longer_than_its_first_memory_to_expire(
        bus: CommandBus, migrated: Settings, cached: CachedMemoryStore) -> None:
    # Given memories expiring in 30 s and in a day (the cache's TTL is 300 s)
    _store(bus, "soon", datetime.now(timezone.utc) + timedelta(seconds=30))
    _store(bus, "tomorrow", datetime.now(timezone.utc) + timedelta(days=1), agent="a2")
    run_projection(migrated, "memories", until_caught_up=True)
    # When each agent's query is cached
    for agent in ("a1", "a2"):
        assert cached.query(MemoryQuery("acme", agent_id=agent)).cache == "MISS"
    # Then the entry holding the memory expiring in 30 s lives at most 30 s; the other the full TTL
    client = connect_redis(migrated)
    ttls = sorted(client.ttl(k) for k in client.scan_iter(match=f"{{{migrated.namespace}:qc:acme}}:e:*"))
    client.close()
    assert len(ttls) == 2 and 0 < ttls[0] <= 30 and ttls[1] > 30


def test_a_memory_about_to_expire_is_not_cached(bus: CommandBus, migrated: Settings, cached: CachedMemoryStore) -> None:
    # Given a memory expiring within the second (an entry's TTL is counted in whole seconds)
    expires = datetime.now(timezone.utc) + SOON
    _store(bus, "brief", expires)
    run_projection(migrated, "memories", until_caught_up=True)
    _sleep_past(expires - timedelta(seconds=0.7))
    # When it is queried twice, Then the result is computed both times (it could not be cached safely)
    q = MemoryQuery("acme")
    assert [(r.cache, _ids(r.rows)) for r in (cached.query(q), cached.query(q))] == [("MISS", ["brief"])] * 2


def test_a_clock_passed_in_decides_expiry_for_queries_and_cache_hits(
        bus: CommandBus, migrated: Settings) -> None:
    # Given a memory expiring in an hour, and stores whose clock the test sets
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    _store(bus, "hour", expires)
    run_projection(migrated, "memories", until_caught_up=True)
    now = [datetime.now(timezone.utc)]
    plain = MemoryStore(database_url(migrated), migrated.db_schema, clock=lambda: now[0])
    cached = CachedMemoryStore(database_url(migrated), migrated.db_schema, connect_redis(migrated),
                               migrated.namespace, 300, clock=lambda: now[0])
    q = MemoryQuery("acme")
    try:
        assert [r.cache for r in (cached.query(q), cached.query(q))] == ["MISS", "HIT"]
        # When the clock passes the expiry (the cache entry still lives in Redis: real time did not pass)
        now[0] = expires
        # Then neither the database nor the cached entry answers with it
        assert plain.query(q).rows == []
        stale = cached.query(q)
        assert (stale.cache, stale.rows, stale.meta) == ("MISS", [], {"cache_reason": "a cached memory expired"})
        with pytest.raises(NotFound):
            plain.get("acme", "hour")
    finally:
        plain.close()
        cached.close()
