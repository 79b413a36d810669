"""GET /v1/health: 200 while the ledger takes writes, 503 while its Redis is down, 200 once it is back.

The Redis here is a private redis-server on a free port (AOF on, so it restarts with its data),
stopped and started again by the test; PostgreSQL is the shared test server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ledger import Settings

from http_server import open_api
from test_durability import free_port, wait_until_up


@dataclass
class PrivateRedis:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


def test_health_is_503_while_redis_is_down_and_200_after(settings: Settings, private_redis: PrivateRedis) -> None:
    own = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{private_redis.port}/0",
                                      "allow_volatile": False})
    with open_api(own) as api, httpx.Client(base_url=api.url, timeout=30) as http:
        up = http.get("/v1/health")
        assert up.status_code == 200 and up.json()["ok"] is True
        assert up.json()["persistence"]["durable"] is True and up.json()["redis"]["latency_ms"] >= 0

        private_redis.stop()
        down = http.get("/v1/health")
        assert down.status_code == 503 and down.headers["Retry-After"]
        assert down.json()["redis"]["ok"] is False and down.json()["postgresql"]["ok"] is True

        private_redis.start()
        back = http.get("/v1/health")
        assert back.status_code == 200 and back.json()["redis"]["ok"] is True
