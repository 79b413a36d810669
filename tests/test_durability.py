"""The start-up durability check, against private Redis servers with chosen persistence."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ledger import Settings, open_log
from ledger.durability import read_persistence
from ledger.errors import DurabilityError

StartRedis = Callable[..., Settings]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        for _ in range(200):
            if server.poll() is not None:
                raise RuntimeError(f"redis-server exited with {server.returncode}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.025)
        raise RuntimeError(f"redis-server on port {port} did not answer")
    finally:
        client.close()


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[StartRedis]:
    """Start a private redis-server with extra arguments; Settings for it, volatility not allowed."""
    servers: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> Settings:
        port = free_port()
        workdir = tmp_path / str(port)
        workdir.mkdir()
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(server)
        wait_until_up(port, server)
        return Settings(redis_url=f"redis://127.0.0.1:{port}/0", namespace="tdur", partitions=2,
                        allow_volatile=False)

    yield start
    for server in servers:
        server.kill()
        server.wait(timeout=10)


def test_redis_without_aof_is_refused_with_the_fix(start_redis: StartRedis) -> None:
    settings = start_redis("--appendonly", "no")

    with pytest.raises(DurabilityError) as refused:
        open_log(settings)

    message = str(refused.value)
    assert "not durable (AOF off" in message
    assert "appendonly yes" in message and "appendfsync everysec" in message
    assert "MEMLEDGER_ALLOW_VOLATILE=1" in message


def test_aof_without_regular_fsync_is_refused(start_redis: StartRedis) -> None:
    settings = start_redis("--appendonly", "yes", "--appendfsync", "no")

    with pytest.raises(DurabilityError, match=r"AOF on \(fsync no\)"):
        open_log(settings)


def test_aof_with_everysec_fsync_opens(start_redis: StartRedis) -> None:
    settings = start_redis("--appendonly", "yes", "--appendfsync", "everysec")

    log = open_log(settings)

    found = read_persistence(log.client)
    assert found.durable and (found.appendonly, found.appendfsync) == (True, "everysec")
    log.client.close()


def test_volatile_redis_opens_only_when_allowed(start_redis: StartRedis) -> None:
    settings = start_redis("--appendonly", "no")

    log = open_log(settings.model_copy(update={"allow_volatile": True}))

    assert log.length(0) == 0
    log.client.close()


def test_turning_aof_on_at_runtime_is_enough(start_redis: StartRedis) -> None:
    settings = start_redis("--appendonly", "no")
    with redis.Redis.from_url(settings.redis_url or "") as client:
        client.config_set("appendonly", "yes")

    open_log(settings).client.close()
