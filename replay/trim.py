"""`ledger trim`: drop old stream entries that the archive and every projection hold.

Per partition the trim point (XTRIM MINID, never MAXLEN) is the smallest of:
- the age cut-off (`--older-than DAYS`, by the time in the stream ids);
- the checkpoint of every registered projection, the archive included (a projection that
  has applied nothing of the partition forbids trimming it at all), and of every other
  consumer that keeps a row in `projection_checkpoints` (the session enqueuer, say);
- the checkpoint of a running rebuild of the archive (it reads the stream alone);
- the archive's newest row (its checkpoint is normally there; ahead of it, rows were lost);
- the archive's oldest known gap: an event it dead-lettered (an older archive projector
  did; it now stops instead) and does not hold, open letter or not. The stream is the only
  copy of such an event, and history readers take it from there.
A partition whose archive lacks events the stream still holds, with no dead letter for
them (rows deleted by hand: `ledger.archive.coverage` counts them), is not trimmed at all.
Everything below the point is in the archive, so rebuilds (which read the archive, then
the stream) still see the full history. The trim itself is the log's own operation
(`EventLog.trim`): it removes the entries and records the newest removed id in one atomic
step, and history readers use that mark to detect a gap instead of skipping events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ledger import Settings, open_log
from ledger.archive import coverage, known_gaps
from ledger.events import stream_id_key
from ledger.log import RedisEventLog
from ledger.postgres import connection, sync_commit
from projections.postgres import checkpoint_table
from projections.registry import PROJECTIONS, open_projection

from .targets import open_target

__all__ = ["TrimPoint", "plan_trim", "trim"]

DAY_MS = 86_400_000
NO_LIMIT = "18446744073709551615-0"  # above every stream id
Limits = list[tuple[str, dict[int, str | None]]]  # (who, partition -> the id it holds the trim at)


@dataclass(frozen=True)
class TrimPoint:
    partition: int
    min_id: str | None  # entries below this id go; None: nothing may be trimmed
    held_by: str  # what sets the point: "age", a projection, a rebuild, a dead letter
    removed: int = 0
    trimmed_through: str | None = None


def plan_trim(settings: Settings, older_than_days: float, now_ms: int | None = None) -> list[TrimPoint]:
    """Where each partition would be trimmed; reads only."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    log = open_log(settings)
    try:
        limits, refusals = _limits(settings, log)
    finally:
        log.close()
    points = []
    for p in range(log.partitions):
        if p in refusals:
            points.append(TrimPoint(p, None, refusals[p]))
            continue
        bounds: list[tuple[str, str | None]] = [("age", f"{max(0, now_ms - int(older_than_days * DAY_MS))}-0")]
        bounds += [(who, checkpoints.get(p)) for who, checkpoints in limits]
        missing = [who for who, sid in bounds if sid is None]
        if missing:
            points.append(TrimPoint(p, None, f"{missing[0]} has applied nothing of this partition"))
            continue
        who, lowest = min(((w, s) for w, s in bounds if s is not None), key=lambda b: stream_id_key(b[1]))
        points.append(TrimPoint(p, lowest if stream_id_key(lowest) > (0, 1) else None, who))
    return points


def _limits(settings: Settings, log: RedisEventLog) -> tuple[Limits, dict[int, str]]:
    out: Limits = []
    for name in PROJECTIONS:
        projection = open_projection(name, settings)
        try:
            out.append((f"projection {name}", dict(projection.checkpoints())))
        finally:
            projection.close()
        target = open_target(settings, name)
        try:
            if target.stream_only and target.shadow_exists():
                # Every partition is limited: one the rebuild has not reached yet maps to None.
                shadow = dict(target.shadow_checkpoints())
                out.append((f"the rebuild of {name}", {p: shadow.get(p) for p in range(settings.partitions)}))
        finally:
            target.close()
    out += _other_consumers(settings, set(PROJECTIONS))
    archive, refusals = _archive_limits(settings, log)
    _flush_commits(settings)
    return out + archive, refusals


def _archive_limits(settings: Settings, log: RedisEventLog) -> tuple[Limits, dict[int, str]]:
    """What the archive's rows allow: its newest row, its oldest known gap, and the partitions
    not to trim at all because the archive lacks events only the stream holds."""
    newest: dict[int, str | None] = {}
    gaps: dict[int, str | None] = {}
    refusals: dict[int, str] = {}
    with connection(settings) as conn:
        for p in range(settings.partitions):
            held = coverage(conn, log, p)
            newest[p] = held.newest or "0-0"  # holds nothing: trims nothing
            gaps[p] = next(iter(known_gaps(conn, p)), NO_LIMIT)
            if held.unarchived:
                refusals[p] = (f"the archive lacks {held.unarchived} event{'s' if held.unarchived > 1 else ''} the "
                               f"stream holds (from {held.first} on) and has no dead letter for them (rows "
                               "deleted?); restore them first (`memledger replay rebuild archive`, if the stream was "
                               "never trimmed)")
    limits: Limits = [("the archive's newest event", newest), ("an archive dead letter (an event it lacks)", gaps)]
    return limits, refusals


def _flush_commits(settings: Settings) -> None:
    """Make the checkpoints just read durable before trimming below them.

    Some projections commit asynchronously (memories: a PostgreSQL crash may lose its last
    batches, which are then re-applied from the stream). A synchronous commit flushes the
    write-ahead log up to itself, so every commit seen before it survives a crash, and no
    checkpoint can fall back below the trim point.
    """
    sync_commit(settings)


def _other_consumers(settings: Settings, known: set[str]) -> list[tuple[str, dict[int, str | None]]]:
    """Checkpointed ledger consumers that are not registered read models (they are not rebuilt,
    but they read the stream, so it must keep what they have not read yet)."""
    with connection(settings) as conn:
        stored = checkpoint_table.all_checkpoints(conn)
    found = {name: {p: held.get(p) for p in range(settings.partitions)}
             for name, held in stored.items() if name not in known}
    return [(f"consumer {name}", limits) for name, limits in sorted(found.items())]


def trim(settings: Settings, older_than_days: float, now_ms: int | None = None) -> list[TrimPoint]:
    """Trim every partition at its `plan_trim` point; what each trim removed, and its mark."""
    out = []
    points = plan_trim(settings, older_than_days, now_ms)
    log = open_log(settings)
    try:
        for point in points:
            if point.min_id is None:
                out.append(point)
                continue
            done = log.trim(point.partition, point.min_id)
            out.append(replace(point, removed=done.removed, trimmed_through=done.mark))
    finally:
        log.close()
    return out
