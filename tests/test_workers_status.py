"""The workers' adapters at their edges: the Redis keys beside the queue (workers.queue_keys)
and the PostgreSQL reads (workers.pg_reads), as `worker status` and an ingest's queue
position use them. Real servers; a lost server and a never migrated namespace are the
project's errors, not the driver's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone

import orjson
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from commands import IngestSession, open_bus
from ledger import Settings
from ledger.errors import NotMigrated, StoreUnavailable
from ledger.events import Message
from ledger.postgres import Connection, connect
from workers.broker import WorkerKeys
from workers.ingest import SessionQueue
from workers.queue_keys import WorkerRedis
from workers.status import FORGET_AFTER_S, daily_counts, heartbeats


@pytest.fixture
def store(settings: Settings) -> Iterator[WorkerRedis]:
    client = redis.Redis.from_url(str(settings.redis_url))
    yield WorkerRedis(client, settings.namespace)
    client.close()


@pytest.fixture
def unmigrated(settings: Settings) -> Iterator[Connection]:
    with connect(settings, autocommit=True) as conn:
        yield conn


def _beat(store: WorkerRedis, worker: str, age_s: float) -> None:
    record = {"role": "dramatiq", "host": "h", "pid": 7, "started_at": time.time() - age_s - 60,
              "at": time.time() - age_s, "processed": 3, "failed": 1}
    store.client.hset(WorkerKeys(store.keys.namespace).heartbeats, worker, orjson.dumps(record))


def test_stale_heartbeats_are_shown_and_forgotten_ones_removed(store: WorkerRedis) -> None:
    # Given a live worker, a silent one, and one not heard of for longer than FORGET_AFTER_S
    _beat(store, "live", 1)
    _beat(store, "silent", 120)
    _beat(store, "gone", FORGET_AFTER_S + 60)
    # When the status reads them
    beats = heartbeats(store, alive_within_s=10)
    # Then the silent one is shown as not alive, and the forgotten one is removed from Redis
    assert [(b.worker, b.alive, b.processed) for b in beats] == [("live", True, 3), ("silent", False, 3)]
    assert set(store.heartbeats()) == {"live", "silent"}


def test_daily_counts_are_per_utc_day_newest_first(store: WorkerRedis) -> None:
    for day, what in [(1, "processed"), (1, "processed"), (1, "failed"), (3, "processed")]:
        store.count_day(what, datetime(2030, 5, day, 12, tzinfo=timezone.utc))

    assert daily_counts(store) == [("2030-05-03", 1, 0), ("2030-05-01", 2, 1)]
    assert daily_counts(store, days=1) == [("2030-05-03", 1, 0)]


def test_an_unreachable_redis_is_store_unavailable() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(StoreUnavailable, match="Redis is unreachable"):
            WorkerRedis(client, "nowhere").depth()
    finally:
        client.close()


def test_a_queue_position_in_a_never_migrated_namespace_is_unknown(settings: Settings, unmigrated: Connection) -> None:
    bus = open_bus(settings)
    try:
        receipt = bus.send(IngestSession(org_id="o", agent_id="a", session_id="s1",
                                         transcript=(Message(role="user", content="hi"),)))
        queue = SessionQueue(bus, unmigrated)
        # The exact position names the missing migration; the estimate an ingest prints is "unknown"
        with pytest.raises(NotMigrated, match="memledger migrate"):
            queue.position(receipt)
        assert queue.estimate(receipt) is None
    finally:
        bus.log.close()
