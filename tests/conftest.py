"""Fixtures for real servers: Redis and PostgreSQL on loopback, cleaned before and after.

Every test gets its own namespace (Redis key prefix and PostgreSQL schema), so tests
never see each other's data and nothing outside the namespace is touched.
"""

from __future__ import annotations

import gc
import os
import signal
import uuid
import warnings
from collections.abc import Iterator

import psycopg
import pytest
import redis
from redis.cluster import RedisCluster

from ledger import Settings
from memledger.local_cluster import LocalCluster

def _stop_signals_as_in_a_terminal() -> None:
    """Tests send Ctrl-C (SIGINT) and SIGHUP to the commands they start and check that these stop
    cleanly. A suite started in the background of a script, or under nohup, inherits those
    signals ignored, and its children would inherit that too and never see them: give this
    process, and so its children, the dispositions a terminal gives."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a child starts with SIG_DFL
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


_stop_signals_as_in_a_terminal()

REDIS_URL = os.environ.get("MEMLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("MEMLEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _require(what: str, probe: object) -> None:
    try:
        probe()  # type: ignore[operator]
    except Exception as e:  # noqa: BLE001 - any failure means the server is not usable
        pytest.fail(f"{what} is not reachable ({e}); start it (see README 'Tests') and run again", pytrace=False)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    _require(f"Redis at {REDIS_URL}", client.ping)
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_available() -> None:
    _require(f"PostgreSQL at {DATABASE_URL}", lambda: psycopg.connect(DATABASE_URL, connect_timeout=3).close())


def _drop_namespace(client: redis.Redis | RedisCluster, namespace: str) -> None:
    for pattern in (f"{{{namespace}:*", f"{{{namespace}}}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])


def _drop_schemas(namespace: str) -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
            (namespace, namespace + "\\_%")).fetchall()
        for (name,) in rows:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def settings(redis_client: redis.Redis, pg_available: None) -> Iterator[Settings]:
    """Settings for a fresh namespace on the loopback servers; removed afterwards."""
    namespace = "t" + uuid.uuid4().hex[:10]
    yield Settings(redis_url=REDIS_URL, database_url=DATABASE_URL, namespace=namespace, partitions=4,
                   allow_volatile=True, rate_per_second=1_000_000, rate_burst=1_000_000)
    _drop_namespace(redis_client, namespace)
    _drop_schemas(namespace)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-master Redis Cluster (AOF, appendfsync everysec) on free loopback ports, for the session."""
    with LocalCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster
        # A RedisCluster client sits in reference cycles, so one a test left unclosed is freed by
        # the collector, which may finalize its sockets before their connections: collected here,
        # before the servers stop, its sockets close without a ResourceWarning at interpreter exit.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@pytest.fixture
def cluster_settings(redis_cluster: LocalCluster, pg_available: None) -> Iterator[Settings]:
    """Settings for a fresh namespace on the session's Redis Cluster (durable: AOF is on)."""
    namespace = "c" + uuid.uuid4().hex[:10]
    yield Settings(redis_url=redis_cluster.url, database_url=DATABASE_URL, namespace=namespace, partitions=4,
                   rate_per_second=1_000_000, rate_burst=1_000_000)
    client = RedisCluster.from_url(redis_cluster.url.replace("redis+cluster://", "redis://").split(",")[0])
    _drop_namespace(client, namespace)
    client.close()
    _drop_schemas(namespace)
    # A cluster client the test left unclosed is collected now, quietly, rather than by a later
    # test's garbage collection, where its ResourceWarning would fail that unrelated test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
