"""Crash safety of the Redis read models: real projector processes SIGKILLed at random points.

Each Redis projection applies a batch and its checkpoint in one Lua script, so whatever
the moment of the kill, a restarted projector continues from a checkpoint that matches
the keys exactly: counters, sorted sets and HyperLogLogs end equal to a clean run's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from commands import CommandBus
from ledger import Settings, open_log
from projections import Projector, ProjectorOptions, open_projection
from projections.redis import REDIS_PROJECTIONS, Analytics, RedisProjection, Trending

from workload import send_all, workload

EVENTS = 50_000
KILLS = 12  # per projection; the three projections are killed independently, in parallel
NAMES = [cls.name for cls in REDIS_PROJECTIONS]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url),
            "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_NAMESPACE": settings.namespace,
            "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1",
            "MEMLEDGER_LEASE_TTL_MS": "300", "MEMLEDGER_PROJECTOR_BATCH": "500"}


def _projector(settings: Settings, name: str, errors: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "memledger", "projector", "run", "-p", name, "--until-caught-up"],
                            env=_env(settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if errors else subprocess.DEVNULL)


def _live(settings: Settings, name: str) -> RedisProjection:
    projection = open_projection(name, settings)
    assert isinstance(projection, RedisProjection)
    return projection


def _kill_repeatedly(settings: Settings, name: str, seed: int, seen: list[dict[int, str]]) -> None:
    """Start a projector, wait until it has applied something, SIGKILL it a moment later; repeat."""
    rnd, live = random.Random(seed), _live(settings, name)
    last = live.checkpoints()
    for _ in range(KILLS):
        proc = _projector(settings, name)
        deadline = time.monotonic() + 30
        while live.checkpoints() == last and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rnd.uniform(0.0, 0.1))  # anywhere: reading, folding, in the script call
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        last = live.checkpoints()
        seen.append(last)
    live.close()


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_the_redis_read_models_equal_to_a_clean_run(settings: Settings) -> None:
    # Given 50k events in the ledger (stamped with one fixed time, so windows are stable)
    now = datetime.now(timezone.utc)
    assert send_all(CommandBus(open_log(settings), None, clock=lambda: now), workload(EVENTS, seed=21)) == EVENTS
    # When each Redis projector is SIGKILLed KILLS times at random points, then allowed to finish
    seen: dict[str, list[dict[int, str]]] = {name: [] for name in NAMES}
    killers = [threading.Thread(target=_kill_repeatedly, args=(settings, name, i, seen[name]))
               for i, name in enumerate(NAMES)]
    for t in killers:
        t.start()
    for t in killers:
        t.join()
    finals = {name: _projector(settings, name, errors=True) for name in NAMES}
    for name, proc in finals.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err.decode()}"
    # Then kills landed mid-run, and each read model equals a clean run into a fresh generation
    log = open_log(settings)
    heads = {p: h for p in range(settings.partitions) if (h := log.head(p))}
    for name in NAMES:
        partial = {tuple(sorted(c.items())) for c in seen[name] if c != heads}
        # Most kills must land mid-run (a fast projector may finish before a late one).
        assert len(partial) >= KILLS // 2, f"{name}: the kills did not land mid-run ({len(partial)} partial states)"
        live = _live(settings, name)
        clean = open_projection(name, settings, "clean")
        assert isinstance(clean, RedisProjection)
        Projector(log, clean, None, ProjectorOptions(batch=1000)).run(until_caught_up=True)
        assert live.checkpoints() == heads == clean.checkpoints()
        assert live.digest() == clean.digest(), name
        live.close()
        clean.close()
    # And the figures analysts see are whole: every event counted once
    today = now.date()
    report = Analytics(log.client, settings.namespace, settings.partitions).report("org0", today, today)
    assert report.events and report.users > 0
    total = sum(sum(Analytics(log.client, settings.namespace, settings.partitions)
                    .report(f"org{o}", today, today).events.values()) for o in range(3))
    assert total == EVENTS
    assert Trending(log.client, settings.namespace, settings.partitions).top("org1", until=now).tags
