"""Crash safety of the projector: SIGKILL at random points, lease takeover by another process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from projections.postgres import migrate

from workload import clean_digest, live_digest, send_all, workload


def _env(settings: Settings, lease_ttl_ms: int) -> dict[str, str]:
    return {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url),
            "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_NAMESPACE": settings.namespace,
            "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1",
            "MEMLEDGER_LEASE_TTL_MS": str(lease_ttl_ms), "MEMLEDGER_PROJECTOR_BATCH": "500"}


def _projector(settings: Settings, *args: str, lease_ttl_ms: int = 500, errors: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "memledger", "projector", "run", "-p", "memories", *args],
                            env=_env(settings, lease_ttl_ms), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if errors else subprocess.DEVNULL)


def _applied(settings: Settings) -> int:
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        row = conn.execute("SELECT coalesce(sum(stored + updated + forgotten + recalls + sessions), 0)"
                           " FROM agent_stats").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_tables_equal_to_a_clean_run(settings: Settings) -> None:
    # Given 50k events in the ledger
    migrate.upgrade(settings)
    assert send_all(open_bus(settings), workload(50_000, seed=11)) == 50_000
    rnd, progress = random.Random(3), [0]
    # When a projector is SIGKILLed at random points (at most 30 times, until it has
    # finished), then allowed to finish. Short runs: a faster start-up or machine must not
    # let the first few runs project everything before the kills land.
    for _ in range(30):
        proc = _projector(settings, "--until-caught-up")
        time.sleep(rnd.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        progress.append(_applied(settings))
        if progress[-1] == 50_000:
            break
    final = _projector(settings, "--until-caught-up", errors=True)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    # Then kills landed mid-run (progress grew between them) and the tables equal a clean run's
    partial = {p for p in progress if 0 < p < 50_000}
    assert len(partial) >= 5, progress
    assert live_digest(settings) == clean_digest(settings)


@pytest.mark.slow
def test_a_second_projector_takes_over_the_lease_of_a_killed_one(settings: Settings) -> None:
    migrate.upgrade(settings)
    bus = open_bus(settings)
    send_all(bus, workload(3_000, seed=12))
    holder = _projector(settings, lease_ttl_ms=1000)
    log = open_log(settings)
    lease_keys = [f"{log.keys.tag(p)}:lease:memories" for p in range(settings.partitions)]
    deadline = time.monotonic() + 30
    while not all(log.client.exists(k) for k in lease_keys) and time.monotonic() < deadline:
        time.sleep(0.05)
    send_all(bus, workload(1_000, seed=13))
    # While the holder lives, a second projector gets no partition and cannot finish
    waiter = _projector(settings, "--until-caught-up", lease_ttl_ms=1000, errors=True)
    time.sleep(1.5)
    assert waiter.poll() is None
    # When the holder dies, the waiter takes the leases over and catches up
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err.decode()
    assert live_digest(settings) == clean_digest(settings)
