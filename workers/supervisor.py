"""`memledger worker run`: the dramatiq worker processes, the enqueuer and the maintenance ticker.

One supervisor process
- runs `python -m dramatiq workers.actors --processes N --threads M` as a child and
  restarts it (after a pause) when it dies: dramatiq's own master stops every worker
  process as soon as one dies unexpectedly, so something above it must bring them back;
- runs the enqueuer (`workers.enqueuer`) in a thread, restarting it after an error; its
  partition leases let several supervisors share the work;
- every `maintenance_interval_s`, enqueues one `run_maintenance` message, if it is the
  supervisor that set the namespace's maintenance key for that interval (so N supervisors
  schedule one round, not N);
- reports its own heartbeat (role `supervisor`) next to the worker processes'.

The child gets every setting in its environment (MEMLEDGER_*), with the Redis and
PostgreSQL URLs resolved, so it never starts embedded servers of its own.
SIGTERM or Ctrl-C stops cleanly: the threads stop, the child gets SIGTERM (dramatiq then
finishes or requeues what it holds), and after `shutdown_timeout_s` SIGKILL. The child
runs in a session of its own (so a terminal's Ctrl-C does not signal it twice) and, on
Linux, gets SIGTERM from the kernel if the supervisor dies (PR_SET_PDEATHSIG), so a
killed supervisor leaves no orphaned workers. If everything is SIGKILLed at once, the
messages the workers held come back after `worker_heartbeat_timeout_ms` (see
`workers.broker`) and the enqueuer's lease expires after `lease_ttl_ms`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ledger.connections import RedisClient, connect_redis, database_url, redis_url
from ledger.errors import ConfigurationError
from ledger.settings import Settings

from .broker import (
    MAINTENANCE_QUEUE,
    QUEUES,
    RUN_MAINTENANCE,
    Heartbeat,
    WorkerKeys,
    broker_kind,
    make_broker,
    message,
    queue_name,
)
from .enqueuer import run_enqueuer

log = logging.getLogger("memledger.worker")
DRAMATIQ_IMPORT_ERROR = 2  # dramatiq's exit code for a module that fails to import or bad arguments


@dataclass
class WorkerOptions:
    processes: int = 1
    threads: int = 2
    enqueuer: bool = True
    maintenance: bool = True
    restart_pause_s: float = 2.0
    shutdown_timeout_s: float = 30.0


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        key = f"MEMLEDGER_{name.upper()}"
        if value is None:
            env.pop(key, None)
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif isinstance(value, bool):
            env[key] = "1" if value else "0"
        else:
            env[key] = str(value)
    env["MEMLEDGER_REDIS_URL"] = redis_url(settings)
    env["MEMLEDGER_DATABASE_URL"] = database_url(settings)
    # dramatiq's idle consumers back off up to this long between polls (its default, 1 s,
    # would be the floor of the queue latency under a light load).
    env["dramatiq_worker_timeout"] = str(settings.worker_poll_ms)
    return env


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started us dies (Linux only)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def dramatiq_command(options: WorkerOptions, settings: Settings | None = None) -> list[str]:
    """The dramatiq command line; `--queues` names the queues as the broker `settings` select calls them."""
    queues = QUEUES if settings is None else tuple(queue_name(settings, q) for q in QUEUES)
    return [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", str(options.processes),
            "--threads", str(options.threads), "--queues", *queues]


def _repeat(name: str, stop: threading.Event, pause_s: float, body: Callable[[], Any]) -> None:
    """Run `body` until `stop`; after an error, log it and run it again after `pause_s`."""
    while not stop.is_set():
        try:
            body()
        except Exception:  # noqa: BLE001 - a supervisor keeps its parts running
            log.exception("%s failed; restarting in %.1fs", name, pause_s)
        stop.wait(pause_s)


class Supervisor:
    def __init__(self, settings: Settings, options: WorkerOptions | None = None, cwd: Path | None = None):
        broker_kind(settings)  # BrokerRequired (a cluster ledger, no broker URL) before anything starts
        self.settings, self.options = settings, options or WorkerOptions()
        self.cwd = cwd or Path(__file__).resolve().parents[1]  # where `workers.actors` imports from
        self.keys = WorkerKeys(settings.namespace)
        self.client: RedisClient = connect_redis(settings)
        self.child: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._pause = self.options.restart_pause_s / 2  # doubled before the first restart

    def run(self, stop: threading.Event) -> None:
        beat = Heartbeat(self.client, self.keys, self.settings.worker_heartbeat_timeout_ms / 3000, role="supervisor")
        beat.start()
        threads = self._start_threads(stop)
        try:
            while not stop.is_set():
                self._run_child(stop)
                stop.wait(self._pause)
        finally:
            stop.set()
            self._stop_child()
            for thread in threads:
                thread.join(timeout=self.options.shutdown_timeout_s)
            beat.stop()

    def _start_threads(self, stop: threading.Event) -> list[threading.Thread]:
        parts: list[tuple[str, Callable[[], Any]]] = []
        if self.options.enqueuer:
            parts.append(("enqueuer", lambda: run_enqueuer(self.settings, stop)))
        if self.options.maintenance:
            parts.append(("maintenance", lambda: self._tick(stop)))
        threads = [threading.Thread(target=_repeat, args=(name, stop, self.options.restart_pause_s, body),
                                    name=f"memledger-{name}", daemon=True) for name, body in parts]
        for thread in threads:
            thread.start()
        return threads

    def _run_child(self, stop: threading.Event) -> None:
        """Run dramatiq until it exits or `stop`; an exit on its own is logged (and restarted)."""
        started = time.monotonic()
        # A session of its own: a terminal's Ctrl-C reaches the supervisor only, which then
        # stops dramatiq with one SIGTERM (a second signal makes dramatiq kill its workers).
        # If the supervisor dies without stopping it, the kernel sends that SIGTERM.
        self.child = subprocess.Popen(dramatiq_command(self.options, self.settings), env=child_env(self.settings), cwd=self.cwd,
                                      start_new_session=True, preexec_fn=_terminate_with_parent)
        while not stop.is_set() and self.child.poll() is None:
            stop.wait(0.5)
        if stop.is_set():
            return
        code = self.child.returncode
        if code == DRAMATIQ_IMPORT_ERROR:
            raise ConfigurationError("the dramatiq workers cannot start (bad arguments, or `workers.actors` does not "
                                     "import); see the error above")
        # A crash loop backs off (doubling up to a minute); a run that lasted resets the pause.
        lasted = time.monotonic() - started > 30
        self._pause = self.options.restart_pause_s if lasted else min(self._pause * 2, 60.0)
        self.restarts += 1
        log.error("dramatiq workers exited with code %s; restarting them in %.1fs (restart %d)",
                  code, self._pause, self.restarts)

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(timeout=self.options.shutdown_timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def _tick(self, stop: threading.Event) -> None:
        broker = make_broker(self.settings)
        interval_ms = int(self.settings.maintenance_interval_s * 1000)
        token = uuid.uuid4().hex
        while not stop.is_set():
            # Slightly shorter than the interval, so the next round's key is free again.
            if self.client.set(self.keys.maintenance, token, nx=True, px=max(1, int(interval_ms * 0.9))):
                broker.enqueue(message(MAINTENANCE_QUEUE, RUN_MAINTENANCE, {}))
            stop.wait(self.settings.maintenance_interval_s)


__all__ = ["Supervisor", "WorkerOptions", "child_env", "dramatiq_command"]
