"""Crash safety of the projector: SIGKILL at random points, lease takeover by another process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.events import stream_id_key
from projections.lease import Leases
from projections.postgres.checkpoint_table import PostgresCheckpoints
from projections.postgres import migrate
from replay.verify import verify

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


def _wait_for_progress(settings: Settings, before: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until the projector `proc` has committed past `before` events (or has exited)."""
    deadline = time.monotonic() + timeout_s
    while _applied(settings) <= before and proc.poll() is None:
        assert time.monotonic() < deadline, f"the projector applied nothing past {before} in {timeout_s:.0f} s"
        time.sleep(0.02)


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
    # When a projector is SIGKILLed at random points (12 times, or until it has finished),
    # then allowed to finish. Each kill lands a random 0.05-0.6 s after that run's first
    # commit, not after its launch: a start-up slower than the kill (imports take about 1.7 s
    # on a loaded machine) would otherwise kill every run before it wrote anything.
    for _ in range(12):
        proc = _projector(settings, "--until-caught-up")
        _wait_for_progress(settings, progress[-1], proc)
        time.sleep(rnd.uniform(0.05, 0.6))
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



def _holders(log: Any, settings: Settings) -> list[str | None]:
    """Each partition's lease holder (its token), None where the lease is free."""
    keys = [Leases(log, "memories", 1000).key(p) for p in range(settings.partitions)]
    return [None if v is None else v.decode() for v in log.client.mget(keys)]


def _pids(holders: list[str | None]) -> Counter[str | None]:
    """Partitions held per process id (tokens are host:pid:random)."""
    return Counter(None if h is None else h.split(":")[1] for h in holders)


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.02)


def _caught_up(settings: Settings, heads: dict[int, str]) -> bool:
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        stored = PostgresCheckpoints(conn, "memories").load()
    return all(stream_id_key(stored.get(p, "0-0")) >= stream_id_key(h) for p, h in heads.items())


def test_two_projector_processes_split_the_partitions_and_one_takes_over_a_killed_ones(settings: Settings) -> None:
    ttl_ms, half = 1500, settings.partitions // 2
    migrate.upgrade(settings)
    bus = open_bus(settings)
    send_all(bus, workload(1_000, seed=14))
    log = open_log(settings)
    # Given two projector processes of one projection
    first, second = _projector(settings, lease_ttl_ms=ttl_ms), _projector(settings, lease_ttl_ms=ttl_ms)
    try:
        # Then they split the partitions, half each
        _wait_for(lambda: _pids(_holders(log, settings)) == {str(first.pid): half, str(second.pid): half}, 60,
                  lambda: f"the leases were not split: {_holders(log, settings)}")
        # When the first is SIGKILLed
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        # Then the second holds every partition within the lease TTL plus one renewal interval (TTL/3),
        # plus a second for a loaded machine's scheduling
        _wait_for(lambda: _pids(_holders(log, settings)) == {str(second.pid): settings.partitions}, 30,
                  lambda: f"the survivor did not take over: {_holders(log, settings)}")
        took = time.monotonic() - killed_at
        assert took <= ttl_ms / 1000 * 4 / 3 + 1.0, f"took {took:.2f}s over a {ttl_ms} ms lease"
        # ... and projects what arrives next on every partition
        send_all(bus, workload(1_000, seed=15))
        heads = {p: h for p in range(settings.partitions) if (h := log.head(p))}
        _wait_for(lambda: _caught_up(settings, heads), 60, lambda: "the survivor did not catch up")
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.close()
    # ... and the read model verifies against a rebuild of the ledger
    result = verify(settings, "memories")
    assert result.agree and result.applied > 0, result.differences
