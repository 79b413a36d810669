"""What the workers are doing: `memledger worker status`.

- queue depth: dramatiq's `sessions` queue (ready, in flight, delayed for a retry, dead),
  plus the backlog the enqueuer has not yet read from the ledger;
- processed and failed sessions per (UTC) day, counted when a summary or a failure is
  first appended (the ledger itself is the exact record: these are operator counters);
- the last heartbeat of each worker process (stale ones are shown, not hidden);
- from the sessions read model: the oldest unprocessed session, and the failed ones with
  their errors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

import orjson
import psycopg
import redis
from psycopg.rows import tuple_row

from ledger.events import stream_id_key
from ledger.log import RedisEventLog

from .broker import SESSIONS_QUEUE, WorkerKeys
from .enqueuer import NAME as ENQUEUER

SCAN_CAP = 10_000  # entries scanned per partition when counting the backlog
JOB_TYPES = (b'"type":"SessionIngested"', b'"type":"SessionRetryRequested"')
FORGET_AFTER_S = 24 * 3600  # heartbeats older than this are dropped from the table


@dataclass(frozen=True)
class QueueDepth:
    ready: int
    in_flight: int
    delayed: int  # waiting for a retry's backoff
    dead: int  # dramatiq's dead letters (kept for a week)


@dataclass(frozen=True)
class WorkerBeat:
    worker: str
    role: str
    host: str
    pid: int
    last_beat_s: float  # seconds ago
    alive: bool
    processed: int
    failed: int
    up_s: float


@dataclass(frozen=True)
class SessionRef:
    org_id: str
    agent_id: str
    session_id: str
    ingested_at: datetime
    error: str | None = None


@dataclass(frozen=True)
class WorkerStatus:
    queue: QueueDepth
    backlog: int  # session events the enqueuer has not read yet
    daily: list[tuple[str, int, int]]  # (day, processed, failed), newest first
    workers: list[WorkerBeat]
    pending: int
    oldest_pending: SessionRef | None
    failed: int
    recent_failures: list[SessionRef] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["daily"] = [{"day": d, "processed": p, "failed": f} for d, p, f in self.daily]
        return out


def queue_depth(client: redis.Redis, keys: WorkerKeys, queue: str = SESSIONS_QUEUE) -> QueueDepth:
    name = keys.queue(queue)
    with client.pipeline(transaction=False) as pipe:
        pipe.llen(name)
        pipe.hlen(f"{name}.msgs")
        pipe.hlen(f"{name}.DQ.msgs")
        pipe.zcard(f"{name}.XQ")
        ready, stored, delayed, dead = (int(x) for x in pipe.execute())
    return QueueDepth(ready, max(0, stored - ready), delayed, dead)


def enqueuer_checkpoints(conn: psycopg.Connection[Any]) -> dict[int, str]:
    rows = conn.cursor(row_factory=tuple_row).execute(
        "SELECT partition, stream_id FROM projection_checkpoints WHERE projection = %s", (ENQUEUER,)).fetchall()
    return {int(p): str(s) for p, s in rows}


def count_jobs(log: RedisEventLog, partition: int, after: str, before: str | None = None) -> int:
    """Session events (ingests, retries) after `after` and, if given, before stream id `before`."""
    until = "+" if before is None else f"({before}"
    if before is not None and stream_id_key(before) <= stream_id_key(after):
        return 0
    entries = cast(list[Any], log.client.xrange(log.keys.stream(partition), f"({after}", until, count=SCAN_CAP))
    return sum(1 for _, fields in entries if any(t in (fields.get(b"e") or b"") for t in JOB_TYPES))


def backlog(log: RedisEventLog, checkpoints: dict[int, str], before: str | None = None) -> int:
    return sum(count_jobs(log, p, checkpoints.get(p, "0-0"), before) for p in range(log.partitions))


def daily_counts(client: redis.Redis, keys: WorkerKeys, days: int = 7) -> list[tuple[str, int, int]]:
    counts: dict[str, dict[str, int]] = {}
    for raw_field, value in client.hgetall(keys.daily).items():
        day, _, what = (raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)).partition(":")
        counts.setdefault(day, {})[what] = int(value)
    return [(d, c.get("processed", 0), c.get("failed", 0)) for d, c in sorted(counts.items(), reverse=True)[:days]]


def heartbeats(client: redis.Redis, keys: WorkerKeys, alive_within_s: float) -> list[WorkerBeat]:
    now, beats, forgotten = time.time(), [], []
    for worker_id, raw in client.hgetall(keys.heartbeats).items():
        name = worker_id.decode() if isinstance(worker_id, bytes) else str(worker_id)
        record = orjson.loads(raw)
        age = max(0.0, now - float(record["at"]))
        if age > FORGET_AFTER_S:
            forgotten.append(name)
            continue
        beats.append(WorkerBeat(name, record.get("role", "?"), record.get("host", "?"), int(record.get("pid", 0)),
                                round(age, 1), age <= alive_within_s, int(record.get("processed", 0)),
                                int(record.get("failed", 0)), round(now - float(record.get("started_at", now)), 1)))
    if forgotten:
        client.hdel(keys.heartbeats, *forgotten)
    return sorted(beats, key=lambda b: b.worker)


def _sessions(conn: psycopg.Connection[Any], status: str, order: str, limit: int) -> tuple[int, list[SessionRef]]:
    cur = conn.cursor(row_factory=tuple_row)
    count = cur.execute("SELECT count(*) FROM sessions WHERE status = %s", (status,)).fetchone()
    rows: Sequence[tuple[Any, ...]] = cur.execute(
        "SELECT org_id, agent_id, session_id, ingested_at, error FROM sessions WHERE status = %s"
        f" ORDER BY ingested_at {order}, org_id, agent_id, session_id LIMIT %s", (status, limit)).fetchall()
    return int(count[0]) if count else 0, [SessionRef(*r) for r in rows]


def collect(log: RedisEventLog, conn: psycopg.Connection[Any], alive_within_s: float) -> WorkerStatus:
    keys = WorkerKeys(log.keys.namespace)
    pending, oldest = _sessions(conn, "pending", "ASC", 1)
    failed, recent = _sessions(conn, "failed", "DESC", 10)
    return WorkerStatus(queue_depth(log.client, keys), backlog(log, enqueuer_checkpoints(conn)),
                        daily_counts(log.client, keys), heartbeats(log.client, keys, alive_within_s),
                        pending, oldest[0] if oldest else None, failed, recent)


def age_s(at: datetime) -> float:
    return max(0.0, (datetime.now(timezone.utc) - at).total_seconds())


__all__ = ["QueueDepth", "SessionRef", "WorkerBeat", "WorkerStatus", "backlog", "collect", "count_jobs",
           "enqueuer_checkpoints", "queue_depth"]
