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
from typing import Any

import orjson
import psycopg
import redis
from psycopg.rows import tuple_row

from ledger.errors import EventError
from ledger.eventlog import EventLog, previous_id
from ledger.events import RecordedEvent, stream_id_key

from .broker import SESSIONS_QUEUE, WorkerKeys
from .enqueuer import NAME as ENQUEUER

SCAN_CAP = 10_000  # entries scanned per partition when counting the backlog
JOB_TYPES = ("SessionIngested", "SessionRetryRequested")  # the events that ask for a job (workers.jobs.job_for)
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


def count_jobs(log: EventLog, partition: int, after: str, before: str | None = None) -> int:
    """Session events (ingests, retries) after `after` and, if given, before stream id `before`."""
    return log.count_after(partition, after, SCAN_CAP, before=before, types=JOB_TYPES)


def backlog(log: EventLog, checkpoints: dict[int, str], before: str | None = None) -> int:
    """Session events the enqueuer has not read yet; with `before`, only those with a smaller stream id."""
    return sum(count_jobs(log, p, checkpoints.get(p, "0-0"), before) for p in range(log.partitions))


def jobs_before(log: EventLog, checkpoints: dict[int, str], mine: RecordedEvent) -> int:
    """Session events the enqueuer has not read yet that were appended before `mine`.

    Stream ids order the events of one partition; across partitions they order milliseconds
    only (each partition numbers its own millisecond from 0). Of another partition's events in
    `mine`'s millisecond, those decided earlier count: `occurred_at` is the command bus's
    clock, exact for one writer (one batch included), within clock skew for several.
    """
    position, ms = mine.position, mine.position.key[0]
    ahead = 0
    for p in range(log.partitions):
        after = checkpoints.get(p, "0-0")
        if p == position.partition:
            ahead += count_jobs(log, p, after, position.stream_id)
        else:
            ahead += count_jobs(log, p, after, f"{ms}-0") + _same_millisecond(log, p, after, mine)
    return ahead


def _same_millisecond(log: EventLog, partition: int, after: str, mine: RecordedEvent) -> int:
    ms = mine.position.key[0]
    start = max(after, previous_id(f"{ms}-0"), key=stream_id_key)
    try:
        tied = log.read(partition, start, SCAN_CAP, until=str(ms))
    except EventError:
        return 0  # an undecodable neighbour is no session; the position stays an estimate
    return sum(1 for r in tied if r.event.type in JOB_TYPES and r.event.occurred_at < mine.event.occurred_at)


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


def _sessions(conn: psycopg.Connection[Any], status: str, order: str, limit: int,
              org_id: str | None = None) -> tuple[int, list[SessionRef]]:
    cur = conn.cursor(row_factory=tuple_row)
    where = "status = %s AND (%s::text IS NULL OR org_id = %s)"
    count = cur.execute(f"SELECT count(*) FROM sessions WHERE {where}", (status, org_id, org_id)).fetchone()
    rows: Sequence[tuple[Any, ...]] = cur.execute(
        f"SELECT org_id, agent_id, session_id, ingested_at, error FROM sessions WHERE {where}"
        f" ORDER BY ingested_at {order}, org_id, agent_id, session_id LIMIT %s",
        (status, org_id, org_id, limit)).fetchall()
    return int(count[0]) if count else 0, [SessionRef(*r) for r in rows]


def collect(log: EventLog, conn: psycopg.Connection[Any], alive_within_s: float,
            org_id: str | None = None) -> WorkerStatus:
    """The processing status; with `org_id`, the sessions counted and listed are that org's only
    (the queue, the backlog, the daily counts and the workers are shared by every org)."""
    keys, client = WorkerKeys(log.namespace), log.redis_client_for_workers()
    pending, oldest = _sessions(conn, "pending", "ASC", 1, org_id)
    failed, recent = _sessions(conn, "failed", "DESC", 10, org_id)
    return WorkerStatus(queue_depth(client, keys), backlog(log, enqueuer_checkpoints(conn)),
                        daily_counts(client, keys), heartbeats(client, keys, alive_within_s),
                        pending, oldest[0] if oldest else None, failed, recent)


def age_s(at: datetime) -> float:
    return max(0.0, (datetime.now(timezone.utc) - at).total_seconds())


__all__ = ["QueueDepth", "SessionRef", "WorkerBeat", "WorkerStatus", "backlog", "collect", "count_jobs",
           "enqueuer_checkpoints", "jobs_before", "queue_depth"]
