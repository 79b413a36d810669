"""`memledger serve` as an operator runs it: a process that migrates, serves, and stops on SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from ledger import Settings

from test_durability import free_port


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url),
            "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_NAMESPACE": settings.namespace,
            "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1"}


def test_serve_migrates_answers_and_stops_cleanly(settings: Settings) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "memledger", "serve", "--port", str(port), "--insecure-no-auth"],
                              env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, health = time.monotonic() + 30, None
        while health is None:
            assert server.poll() is None and time.monotonic() < deadline, "serve did not come up"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
        assert health.status_code == 200 and health.json()["migrated"] is True
        assert health.json()["features"]["auth"] is False
    finally:
        server.terminate()
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0
    assert b"insecure-no-auth" in out + err and b"loopback" in out + err


def test_serve_refuses_insecure_mode_beyond_loopback(settings: Settings) -> None:
    done = subprocess.run([sys.executable, "-m", "memledger", "serve", "--host", "0.0.0.0", "--insecure-no-auth"],
                          env=_env(settings), capture_output=True, timeout=60)
    assert done.returncode == 3 and b"loopback only" in done.stderr
