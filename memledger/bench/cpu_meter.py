"""`CpuMeter`: the CPU a measured piece of work costs in this process, in the PostgreSQL
backends serving it and, optionally, in the Redis server.

Used by the rebuild benchmark (`rebuild_bench`) and the projection figures
(`projections_bench`): CPU time, unlike wall time, is not skewed by other work on a shared
machine, and it shows where a figure's ceiling is.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import redis

from ledger.connections import RedisClient
from ledger import Settings
from ledger.postgres import connect

__all__ = ["POLL_S", "CpuMeter", "cpu_ticks"]


#: How often the meter reads its backends' CPU: a backend that lives shorter than this
#: (a tiny rebuild's) may be missed, so keep it well below a small rebuild's duration.
POLL_S = 0.02


class CpuMeter:
    """CPU seconds of this process (and its workers), of the PostgreSQL backends it talks to
    and, given a client, of the Redis server.

    The machine may be shared (CI, other work), so wall time alone misleads; CPU time
    does not, and it shows where a figure's ceiling is: N cores cannot run more than N
    CPU-seconds a second. Backends are found by application_name (PGAPPNAME, set for this
    process while the meter runs, so only connections opened inside it are counted) and
    read from /proc while they live, so it only works with PostgreSQL on this host; with
    `postgres=False` (work that opens no backend) nothing is polled, so the meter adds no
    queries and no thread to what it measures. The Redis figure is the server's own
    account (INFO cpu), everything it did meanwhile.
    """

    def __init__(self, settings: Settings, redis_client: RedisClient | None = None, postgres: bool = True):
        self.settings, self.app, self.redis = settings, f"replay-bench-{os.getpid()}", redis_client
        self._ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True) if postgres else None
        self.python_s = self.postgres_s = self.redis_s = 0.0

    def __enter__(self) -> CpuMeter:
        self._previous_app = os.environ.get("PGAPPNAME")
        os.environ["PGAPPNAME"] = self.app
        self._started = time.process_time() + _children_cpu()
        self._redis_started = self._redis_cpu()
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.python_s = time.process_time() + _children_cpu() - self._started
        self.postgres_s = sum(self._ticks.values()) / os.sysconf("SC_CLK_TCK")
        self.redis_s = self._redis_cpu() - self._redis_started
        if self._previous_app is None:
            os.environ.pop("PGAPPNAME", None)
        else:
            os.environ["PGAPPNAME"] = self._previous_app

    def _redis_cpu(self) -> float:
        if self.redis is None:
            return 0.0
        info: Any = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def _poll(self) -> None:
        # Polled, not read once at the end: a backend's counters vanish with it.
        with connect(self.settings, "", autocommit=True, application_name="replay-bench-meter") as conn:
            while not self._stop.wait(POLL_S):
                self._read_backends(conn)
            self._read_backends(conn)

    def _read_backends(self, conn: psycopg.Connection[Any]) -> None:
        for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                   (self.app,)).fetchall():
            with contextlib.suppress(OSError, IndexError, ValueError):
                self._ticks[pid] = max(self._ticks.get(pid, 0), cpu_ticks(pid))


def cpu_ticks(pid: int) -> int:
    """Clock ticks of CPU (user + system) process `pid` has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once joined
    return usage.ru_utime + usage.ru_stime
