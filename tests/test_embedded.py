"""The embedded Redis default: started under MEMLEDGER_HOME with AOF on, reused, and durable."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import embedded_redis_url


def pid_of(home: Path) -> int:
    return int((home / "redis" / "redis.pid").read_text())


def shutdown(url: str) -> None:
    """SHUTDOWN the server (it writes its AOF first) and wait until its process is gone."""
    client = redis.Redis.from_url(url)
    pid = int(client.info("server")["process_id"])
    try:
        client.shutdown()
    except redis.ConnectionError:
        pass  # already gone
    finally:
        client.close()
    for _ in range(400):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.025)
    raise RuntimeError(f"embedded Redis (pid {pid}) did not stop")


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A short path: the server listens on a unix socket, whose path is limited to ~100 bytes.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MEMLEDGER_HOME", str(home))
    for name in ("MEMLEDGER_REDIS_URL", "MEMLEDGER_DATABASE_URL", "MEMLEDGER_ALLOW_VOLATILE"):
        monkeypatch.delenv(name, raising=False)
    yield home
    sock = home / "redis" / "redis.sock"
    if sock.exists():
        try:
            shutdown(f"unix://{sock}")
        except redis.ConnectionError:
            pass  # the test already stopped it


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
        assert client.config_get("appendonly") == {"appendonly": "yes"} or \
            client.config_get("appendonly") == {b"appendonly": b"yes"}
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
    shutdown(embedded_redis_url(home))
    url = embedded_redis_url(home)

    # Then it is a new process that replayed its AOF
    assert pid_of(home) != old_pid
    log = open_log(Settings(namespace="temb", partitions=2))
    [record] = log.read(receipt.partition)
    assert record.position == receipt.position
    assert record.event.data.content == "survives restarts"  # type: ignore[attr-defined]
    log.client.close()
    assert url.startswith("unix://")
