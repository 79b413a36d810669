"""The dramatiq actors. Imported by the dramatiq worker processes (`dramatiq workers.actors`,
which `memledger worker` runs); producers never import it (see `workers.broker`).

- `process_session(**job)`: extract and append one session's memories and summary.
  Failures retry with exponential backoff (`MEMLEDGER_WORKER_MAX_RETRIES`,
  `..._MIN_BACKOFF_MS`, `..._MAX_BACKOFF_MS`); when retries run out, dramatiq calls
  `session_failed`, which appends SessionExtractionFailed with the last error. A job that
  can never succeed (its ingest event is gone) is marked failed at once.
- `run_maintenance()`: one round of expiry and retention (`workers.expiry`).

Settings come from the environment (MEMLEDGER_*), read once per process at import.
Connections are opened lazily, after dramatiq forks its worker processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import dramatiq

from commands import open_bus
from ledger.connections import connect_redis
from ledger.errors import RateLimited
from ledger.settings import Settings
from projections import open_memory_store

from .broker import (
    MAINTENANCE_QUEUE,
    PROCESS_SESSION,
    RUN_MAINTENANCE,
    SESSION_FAILED,
    SESSIONS_QUEUE,
    Heartbeat,
    WorkerKeys,
    make_broker,
)
from .expiry import run_maintenance as maintenance_round
from .extract import make_extractor
from .jobs import Job
from .process import PermanentFailure, ArchiveReader, SessionProcessor, within_rate

log = logging.getLogger("memledger.worker")
settings = Settings()
_keys = WorkerKeys(settings.namespace)
# Heartbeats go to the ledger's Redis whichever the broker (RabbitMQ included), through the
# one connect helper, as the supervisor's do.
heartbeat = Heartbeat(connect_redis(settings), _keys, settings.worker_heartbeat_timeout_ms / 3000)
broker = make_broker(settings, [heartbeat])
dramatiq.set_broker(broker)
_lock = threading.Lock()
T = TypeVar("T")
RATE_LIMIT_WAITS = 10

RETRIES: dict[str, Any] = {"max_retries": settings.worker_max_retries, "min_backoff": settings.worker_min_backoff_ms,
                           "max_backoff": settings.worker_max_backoff_ms}


@cache
def _processor() -> SessionProcessor:
    # A system bus: the workers send SummarizeSession, MarkSessionFailed, ExpireMemory and
    # PurgeTranscript, which an agent's bus refuses.
    return SessionProcessor(open_bus(settings, system=True), make_extractor(settings), ArchiveReader(settings))


def processor() -> SessionProcessor:
    with _lock:  # one per process, shared by its threads (the bus and Redis pool are thread-safe)
        return _processor()


@dramatiq.actor(actor_name=PROCESS_SESSION, queue_name=SESSIONS_QUEUE, on_retry_exhausted=SESSION_FAILED, **RETRIES)
def process_session(**job: Any) -> None:
    parsed = Job.from_kwargs(job)
    try:
        result = _within_rate(lambda: processor().process(parsed))
    except PermanentFailure as e:
        log.error("session %s failed for good: %s", parsed.session_id, e)
        processor().fail(parsed, str(e), 1)
        return
    log.debug("session %s: %s", parsed.session_id, result)


def _within_rate(action: Callable[[], T]) -> T:
    try:
        return within_rate(action, RATE_LIMIT_WAITS)
    except RateLimited as e:
        raise dramatiq.Retry(str(e), delay=max(1, int(e.retry_after * 1000))) from e


def last_error(message: dict[str, Any]) -> str:
    """The last line of the traceback dramatiq kept of the final failure."""
    lines = [line for line in str(message.get("options", {}).get("traceback") or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed (no traceback kept)"


@dramatiq.actor(actor_name=SESSION_FAILED, queue_name=SESSIONS_QUEUE, **RETRIES)
def session_failed(message: dict[str, Any], retries: dict[str, Any]) -> None:
    job = Job.from_kwargs(message["kwargs"])
    processor().fail(job, last_error(message), int(retries.get("retries", 0)) + 1)


@dramatiq.actor(actor_name=RUN_MAINTENANCE, queue_name=MAINTENANCE_QUEUE, max_retries=0)
def run_maintenance() -> None:
    store = open_memory_store(settings)
    try:
        report = maintenance_round(processor().bus, store.conn, settings.retention_days,
                                   idle_close_s=settings.session_idle_close_s,
                                   max_messages=settings.session_max_messages)
    finally:
        store.close()
    log.info("maintenance: %d expired, %d transcripts purged, %d skipped (changed since), %d already done",
             report.expired, report.purged, report.skipped, report.duplicates)


__all__ = ["broker", "process_session", "run_maintenance", "session_failed"]
