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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from ledger.errors import EventError
from ledger.eventlog import EventLog, previous_id
from ledger.events import RecordedEvent, stream_id_key
from projections.postgres.checkpoint_table import PostgresCheckpoints

from .enqueuer import NAME as ENQUEUER
from .pg_reads import sessions_with_status
from .queue_keys import QueueDepth, WorkerRedis
from .queues import queue_reader

if TYPE_CHECKING:
    from ledger.postgres import Connection
    from ledger.settings import Settings

SCAN_CAP = 10_000  # entries scanned per partition when counting the backlog
JOB_TYPES = ("SessionIngested", "SessionRetryRequested")  # the events that ask for a job (workers.jobs.job_for)
FORGET_AFTER_S = 24 * 3600  # heartbeats older than this are dropped from the table


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


def enqueuer_checkpoints(conn: Connection) -> dict[int, str]:
    """The enqueuer's checkpoint of each partition it has read from (the others are at the start)."""
    return PostgresCheckpoints(conn, ENQUEUER).load()


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


def daily_counts(store: WorkerRedis, days: int = 7) -> list[tuple[str, int, int]]:
    """(day, processed, failed) of the newest `days` days that counted anything, newest first."""
    counts: dict[str, dict[str, int]] = {}
    for name, value in store.daily().items():
        day, _, what = name.partition(":")
        counts.setdefault(day, {})[what] = value
    return [(d, c.get("processed", 0), c.get("failed", 0)) for d, c in sorted(counts.items(), reverse=True)[:days]]


def heartbeats(store: WorkerRedis, alive_within_s: float) -> list[WorkerBeat]:
    """Every worker's last heartbeat, by worker id; those older than FORGET_AFTER_S are removed."""
    now, beats, forgotten = time.time(), [], []
    for name, raw in store.heartbeats().items():
        record = orjson.loads(raw)
        age = max(0.0, now - float(record["at"]))
        if age > FORGET_AFTER_S:
            forgotten.append(name)
            continue
        beats.append(WorkerBeat(name, record.get("role", "?"), record.get("host", "?"), int(record.get("pid", 0)),
                                round(age, 1), age <= alive_within_s, int(record.get("processed", 0)),
                                int(record.get("failed", 0)), round(now - float(record.get("started_at", now)), 1)))
    store.forget_heartbeats(forgotten)
    return sorted(beats, key=lambda b: b.worker)


def _sessions(conn: Connection, status: str, newest_first: bool, limit: int,
              org_id: str | None = None) -> tuple[int, list[SessionRef]]:
    count, rows = sessions_with_status(conn, status, newest_first, limit, org_id)
    return count, [SessionRef(*r) for r in rows]


def collect(log: EventLog, conn: Connection, alive_within_s: float, org_id: str | None = None,
            settings: Settings | None = None) -> WorkerStatus:
    """Everything `memledger worker status` shows; `conn` reads the sessions read model and checkpoints.
    With `org_id`, the sessions counted and listed are that org's only (the queue, the backlog, the
    daily counts and the workers are shared by every org). `settings` say which broker holds the
    queue (without them, dramatiq's keys beside the ledger)."""
    store = WorkerRedis.of(log)
    pending, oldest = _sessions(conn, "pending", False, 1, org_id)
    failed, recent = _sessions(conn, "failed", True, 10, org_id)
    return WorkerStatus(queue_reader(settings, log).depth(), backlog(log, enqueuer_checkpoints(conn)), daily_counts(store),
                        heartbeats(store, alive_within_s), pending, oldest[0] if oldest else None, failed, recent)


def age_s(at: datetime) -> float:
    return max(0.0, (datetime.now(timezone.utc) - at).total_seconds())


__all__ = ["QueueDepth", "SessionRef", "WorkerBeat", "WorkerStatus", "backlog", "collect", "count_jobs",
           "daily_counts", "enqueuer_checkpoints", "heartbeats", "jobs_before"]
