"""The embedded Redis default: started under MEMLEDGER_HOME with AOF on, reused, and durable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from commands import open_bus
from ledger import Settings, open_log
from ledger.embedded import embedded_redis_url


def pid_of(home: Path) -> int:
    return int((home / "redis" / "redis.pid").read_text())


def shutdown(home: Path) -> None:
    """SHUTDOWN the embedded server (it fsyncs its AOF first) and wait until it has let go.

    The server removes its pid file as its last step; waiting on the process itself would
    also wait for whoever adopted the daemon to reap it.
    """
    # No retries: the dropped connection is the expected answer to SHUTDOWN.
    client = redis.Redis(unix_socket_path=str(home / "redis" / "redis.sock"), retry=Retry(NoBackoff(), 0))
    try:
        client.shutdown()
    except redis.ConnectionError:
        pass  # already gone
    finally:
        client.close()
    for _ in range(400):
        if not (home / "redis" / "redis.pid").exists():
            return
        time.sleep(0.025)
    raise RuntimeError(f"embedded Redis under {home} did not stop")


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A short path: the server listens on a unix socket, whose path is limited to ~100 bytes.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MEMLEDGER_HOME", str(home))
    for name in ("MEMLEDGER_REDIS_URL", "MEMLEDGER_DATABASE_URL", "MEMLEDGER_ALLOW_VOLATILE"):
        monkeypatch.delenv(name, raising=False)
    yield home
    if (home / "redis" / "redis.sock").exists():
        shutdown(home)


def test_embedded_redis_starts_with_aof_and_is_reused(home: Path) -> None:
    # Given no URLs, only a home directory
    settings = Settings(namespace="temb", partitions=2)
    assert (settings.home, settings.redis_url, settings.allow_volatile) == (home, None, False)

    # When the embedded Redis is asked for twice
    url = embedded_redis_url(home)
    first_pid = pid_of(home)
    again = embedded_redis_url(home)

    # Then one server runs, with AOF on, and the durability check accepts it
    assert again == url == f"unix://{home / 'redis' / 'redis.sock'}"
    assert pid_of(home) == first_pid
    with redis.Redis.from_url(url) as client:
        assert client.config_get("appendonly") in ({"appendonly": "yes"}, {b"appendonly": b"yes"})
        assert int(client.info("server")["process_id"]) == first_pid
    open_log(settings).client.close()


def test_embedded_redis_keeps_events_across_a_restart(home: Path) -> None:
    # Given an event appended to the embedded ledger
    settings = Settings(namespace="temb", partitions=2)
    bus = open_bus(settings)
    receipt = bus.send({"type": "StoreMemory", "org_id": "acme", "agent_id": "a1", "memory_id": "m1",
                        "content": "survives restarts"})
    bus.log.client.close()
    old_pid = pid_of(home)

    # When the server shuts down and the next run starts it again
    shutdown(home)
    url = embedded_redis_url(home)

    # Then it is a new process that replayed its AOF
    assert pid_of(home) != old_pid
    log = open_log(Settings(namespace="temb", partitions=2))
    [record] = log.read(receipt.partition)
    assert record.position == receipt.position
    assert record.event.data.content == "survives restarts"  # type: ignore[attr-defined]
    log.client.close()
    assert url.startswith("unix://")
