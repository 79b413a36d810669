"""Rebuild a read model: replay history into a shadow, catch up to the head, swap it in.

The steps, and what makes each safe:

1. Open (or reopen) the shadow; its checkpoints say where each partition resumes. Only the
   rebuild writes there, guarded by PostgreSQL advisory locks per (shadow, partition), so a
   second rebuild of the same projection refuses instead of racing.
2. Replay each partition from the archive and then the stream (`ledger.archive.read_from`)
   in batches of `batch` events through the projection's own `apply`, which commits rows
   and shadow checkpoint together: a SIGKILL loses at most the batch in flight, and the
   next run resumes after the last committed one. Nothing is ever written to the log.
3. Fail fast: a batch that fails with a data error is re-applied event by event (events
   before the culprit commit, so a rerun resumes right at it) and the culprit raises
   PoisonEvent naming the event, its position and the error. Nothing is dead-lettered.
4. Catch up in rounds while the live projector keeps running, until a round has little
   left to do; then `Shadow.swap` holds the live projector off, runs one last
   catch-up to the head it sees under the lock, and swaps atomically.

`--until`/`--to` (a bound) and `--partition` (one partition) only advance the shadow and
leave it in place, never swapping: a later `replay rebuild NAME` without them resumes
every partition, catches up and swaps. Several `--partition` runs can work in parallel.
Ctrl-C (KeyboardInterrupt) rolls back the batch in flight and leaves the live model and
the shadow's committed progress as they are.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ledger import Settings, open_log
from ledger.archive import HistoryGap, archive_estimate, newest_archived, read_from, trimmed_through
from ledger.errors import ConfigurationError, EventError, PoisonEvent, ProjectionError
from ledger.events import RecordedEvent, stream_id_key
from ledger.log import RedisEventLog
from ledger.postgres import advisory_locks, connection
from projections.base import FencedOut, Projection
from projections.runtime import POISON, fewer_collections, is_bug, where
from projections.shadow import Shadow

from .parallel import replay_in_workers, shares
from .read_ahead import ReadAhead
from .targets import lock_keys, open_target

__all__ = ["BATCH", "PARALLEL_ABOVE", "PartitionPlan", "Progress", "ReadAhead", "RebuildPlan", "RebuildResult",
           "Replayer", "auto_workers", "estimate_events", "fewer_collections", "parse_bound", "plan_rebuild", "rebuild",
           "refuse_trimmed"]

# Events per transaction. A lane holds three chunks at most (one applied, one read ahead, one
# being read), so this bounds a rebuild process's memory whatever the history's size. With two
# lanes, 10,000 gave a peak RSS of 229-231 MB at 300k and 1M events where 20,000 and two
# chunks read ahead gave 408-455 MB, at 2-4% more time; 5,000 gave 156-161 MB but cost 8-17%
# (smaller batches fold fewer repeated changes of a row): docs/benchmarks.md, "Issue 18,
# night of 2026-12-04".
BATCH = 10_000
CATCH_UP_ROUNDS = 10
CATCH_UP_LEFT = 2000  # swap once a catch-up round had no more than this to apply
MAX_SEQ = 2**64 - 1
PARALLEL_ABOVE = 200_000  # events; below, starting worker processes costs more than it saves


@dataclass(frozen=True)
class Progress:
    projection: str
    phase: str  # replay | indexes | catch-up | swap
    partition: int  # -1 (and position "") between batches
    position: str
    applied: int  # events applied by this run so far
    total: int  # events this run expects to apply (an estimate; grows while catching up)


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    start: str  # the shadow's checkpoint: "0-0" on a fresh shadow
    estimate: int  # events to replay (archive rows counted or, for a large archive, estimated by
    # the planner; the stream tail estimated from its length and time span)


@dataclass(frozen=True)
class RebuildPlan:
    projection: str
    shadow: str
    resuming: bool
    bound: str | None  # replay only up to this stream id, then stop without swapping
    partitions: tuple[PartitionPlan, ...]
    swap: bool

    @property
    def total(self) -> int:
        return sum(p.estimate for p in self.partitions)


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    applied: int
    seconds: float
    swapped: bool
    checkpoints: dict[int, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.applied / self.seconds if self.seconds > 0 else 0.0


Report = Callable[[Progress], None]


def parse_bound(until: str | None = None, to: str | None = None) -> str | None:
    """`--until` (ISO 8601 time, UTC when naive) or `--to` (a stream id) as an inclusive stream id."""
    if until is not None and to is not None:
        raise ConfigurationError("give --until or --to, not both")
    if to is not None:
        try:
            ms, seq = stream_id_key(to)
        except ValueError:
            raise ConfigurationError(f"--to {to!r} is not a stream id (<milliseconds>-<sequence>)") from None
        return f"{ms}-{seq if '-' in to else MAX_SEQ}"
    if until is not None:
        try:
            at = datetime.fromisoformat(until)
        except ValueError:
            raise ConfigurationError(f"--until {until!r} is not an ISO 8601 time") from None
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        return f"{int(at.timestamp() * 1000)}-{MAX_SEQ}"
    return None


# -- applying history to a shadow ------------------------------------------------------


class Replayer:
    """Applies history to a shadow projection in large batches, failing fast."""

    def __init__(self, log: RedisEventLog, projection: Projection, settings: Settings | None, batch: int = BATCH,
                 report: Report | None = None, phase: str = "replay", appliers: int = 1):
        self.log, self.projection, self.settings, self.batch = log, projection, settings, batch
        self.report, self.phase = report, phase
        self.applied, self.total = 0, 0
        self.appliers = appliers
        self._handles: list[Projection] = [projection]
        self._counting = threading.Lock()  # lanes apply (and report) on several threads

    def close(self) -> None:
        """Close the handles opened for lanes (the projection itself is its owner's)."""
        for twin in self._handles[1:]:
            twin.close()
        del self._handles[1:]

    def note(self, phase: str) -> None:
        """Enter `phase`, and say so to the progress report."""
        self.phase = phase
        if self.report is not None:
            self.report(Progress(self.projection.name, phase, -1, "", self.applied, max(self.total, self.applied)))

    def to(self, targets: dict[int, str | None], cursors: dict[int, str],
           sizes: Mapping[int, int] | None = None) -> int:
        """Advance each partition from `cursors[p]` to `targets[p]` (None: the head); events applied.

        A thread reads and decodes the next chunk while the current one is applied, so
        PostgreSQL's writing and Python's decoding overlap. With `appliers` > 1 and a
        projection that has siblings, that many lanes do this side by side, each taking
        the next partition left (the largest first, given `sizes`: estimated events) and
        applying it on a handle of its own: one lane folds while another's database writes.
        """
        before = self.applied
        order = sorted(targets, key=lambda p: (-(sizes or {}).get(p, 0), p))
        pending = collections.deque((p, cursors.get(p, "0-0"), targets[p]) for p in order)
        lanes = self._lanes(len(pending))
        if len(lanes) == 1:
            self._lane(lanes[0], pending, cursors, threading.Event())
            return self.applied - before
        stop, failures = threading.Event(), []

        def lane(handle: Projection) -> None:
            try:
                self._lane(handle, pending, cursors, stop)
            except BaseException as e:  # noqa: BLE001 - raised by the caller's thread, below
                failures.append(e)
                stop.set()

        others = [threading.Thread(target=lane, args=(h,), name=f"replay-lane-{i}", daemon=True)
                  for i, h in enumerate(lanes[1:], 1)]
        for thread in others:
            thread.start()
        try:
            self._lane(lanes[0], pending, cursors, stop)  # on this thread: Ctrl-C rolls its batch back
        except BaseException:
            stop.set()  # the others end after their batch in flight (committed or rolled back whole)
            raise
        finally:
            for thread in others:
                thread.join()
        if failures:
            raise failures[0]
        return self.applied - before

    def _lanes(self, partitions: int) -> list[Projection]:
        while len(self._handles) < min(self.appliers, partitions) and (twin := self.projection.sibling()) is not None:
            self._handles.append(twin)
        return self._handles[:max(1, min(self.appliers, partitions))]

    def _lane(self, handle: Projection, pending: collections.deque[tuple[int, str, str | None]],
              cursors: dict[int, str], stop: threading.Event) -> None:
        def taken() -> Iterator[tuple[int, str, str | None]]:
            while not stop.is_set():
                try:
                    yield pending.popleft()
                except IndexError:
                    return

        # One chunk ahead is enough to overlap reading with applying; more only holds memory.
        reader: ReadAhead[tuple[int, list[RecordedEvent]]] = ReadAhead(lambda: self._chunks(taken()), depth=1)
        with reader as chunks:
            for partition, chunk in chunks:
                if stop.is_set():
                    return
                cursors[partition] = self._apply(handle, partition, chunk, cursors.get(partition, "0-0"))

    def _chunks(self, plan: Iterable[tuple[int, str, str | None]]) -> Iterator[tuple[int, list[RecordedEvent]]]:
        for partition, after, until in plan:
            chunk: list[RecordedEvent] = []
            try:
                for r in read_from(self.settings, self.log, partition, after, until, page=self.batch):
                    chunk.append(r)
                    if len(chunk) >= self.batch:
                        yield partition, chunk
                        after, chunk = chunk[-1].position.stream_id, []
            except EventError as e:  # an undecodable body or an event type no upcaster knows
                raise PoisonEvent(f"{self.projection.name}: {e}; the rebuild stopped after {partition}/{after} "
                                  "(the live model is untouched)") from e
            if chunk:
                yield partition, chunk

    def _apply(self, handle: Projection, partition: int, events: Sequence[RecordedEvent], after: str) -> str:
        try:
            handle.apply(partition, events, after)
        except FencedOut as e:
            raise ProjectionError(f"{self.projection.name}: someone else wrote to the shadow ({e}); "
                                  "is another rebuild running?") from e
        except Exception as e:
            if not isinstance(e, POISON) and not is_bug(e):
                raise
            self._find_poison(handle, partition, events, after)
        last = events[-1].position.stream_id
        with self._counting:
            self.applied += len(events)
            if self.report is not None:
                self.report(Progress(self.projection.name, self.phase, partition, last, self.applied,
                                     max(self.total, self.applied)))
        return last

    def _find_poison(self, handle: Projection, partition: int, events: Sequence[RecordedEvent], after: str) -> None:
        for r in events:
            try:
                handle.apply(partition, [r], after)
            except Exception as e:
                if not isinstance(e, POISON) and not is_bug(e):
                    raise
                # Bad data is a PoisonEvent; a fault of the projection's code is not the event's.
                kind = PoisonEvent if isinstance(e, POISON) else ProjectionError
                raise kind(
                    f"{where(self.projection.name, partition, r)} failed: {type(e).__name__}: {_one_line(e)}; the "
                    "rebuild stopped there (the live model is untouched); fix the cause and run it again to "
                    "resume") from e
            after = r.position.stream_id
        # Each event applied on its own: the batch's failure came from their combination,
        # and they are all committed now; carry on.


def _one_line(error: Exception) -> str:
    return " | ".join(line.strip() for line in str(error).splitlines() if line.strip())


# -- planning ----------------------------------------------------------------------------


def plan_rebuild(settings: Settings, name: str, partitions: Iterable[int] | None = None, bound: str | None = None,
                 target: Shadow | None = None) -> RebuildPlan:
    """What a rebuild would do, without writing anything (`--dry-run`)."""
    log = open_log(settings)
    own = target is None
    target = target or open_target(settings, name)
    try:
        starts = target.shadow_checkpoints()
        chosen = _partitions(log, partitions)
        if target.stream_only:
            refuse_trimmed(log, name, chosen, starts)
        plans = tuple(PartitionPlan(p, starts.get(p, "0-0"),
                                    estimate_events(settings, log, p, starts.get(p, "0-0"), bound, target.stream_only))
                      for p in chosen)
        return RebuildPlan(name, target.shadow_label, bool(starts), bound, plans,
                           swap=bound is None and partitions is None)
    finally:
        if own:
            target.close()


def _partitions(log: RedisEventLog, partitions: Iterable[int] | None) -> tuple[int, ...]:
    chosen = tuple(sorted(set(range(log.partitions) if partitions is None else partitions)))
    wrong = [p for p in chosen if not 0 <= p < log.partitions]
    if wrong:
        raise ConfigurationError(f"no partition {wrong[0]}: the ledger has partitions 0..{log.partitions - 1}")
    return chosen


def refuse_trimmed(log: RedisEventLog, name: str, partitions: Iterable[int], starts: Mapping[int, str]) -> None:
    for p in partitions:
        mark, start = trimmed_through(log, p), starts.get(p, "0-0")
        if mark is not None and stream_id_key(start) < stream_id_key(mark):
            raise HistoryGap(
                f"the {name!r} read model can only be rebuilt from what the stream still holds, and partition {p} "
                f"was trimmed through {mark}; it cannot be rebuilt (it is the history other rebuilds read)")


def estimate_events(settings: Settings, log: RedisEventLog, partition: int, after: str, bound: str | None,
              stream_only: bool) -> int:
    archived, last = 0, after
    if not stream_only:
        with connection(settings) as conn:
            archived = archive_estimate(conn, partition, after, bound)
            newest = newest_archived(conn, partition)
            if newest is not None:
                last = max(last, newest, key=stream_id_key)
    return archived + _stream_estimate(log, partition, last, bound)


def _stream_estimate(log: RedisEventLog, partition: int, after: str, bound: str | None) -> int:
    """Stream entries in (after, bound], estimated from XLEN and the ids' time span."""
    length, first, head = log.length(partition), log.first(partition), log.head(partition)
    if not length or first is None or head is None:
        return 0
    lo, hi = stream_id_key(first)[0], stream_id_key(head)[0]
    start = max(stream_id_key(after)[0], lo)
    end = min(stream_id_key(bound)[0], hi) if bound else hi
    if end < start:
        return 0
    return length if hi == lo else round(length * (end - start + 1) / (hi - lo + 1))


# -- the rebuild -------------------------------------------------------------------------


def auto_workers(plan: RebuildPlan) -> int:
    """How many processes `memledger replay rebuild` uses when not told: one per core (at most
    one per partition, and 8) once the history is large enough to repay starting them."""
    if plan.total < PARALLEL_ABOVE:
        return 1
    return max(1, min(os.cpu_count() or 1, len(plan.partitions), 8))


def rebuild(settings: Settings, name: str, partitions: Iterable[int] | None = None, bound: str | None = None,
            batch: int = BATCH, report: Report | None = None, workers: int = 1,
            appliers: int | None = None) -> RebuildResult:
    """Rebuild `name` into its shadow; with neither `partitions` nor `bound`, catch up and swap.

    With `workers` > 1 the bulk of the replay runs in that many processes (replay.parallel,
    each running this function for its share of the partitions: replay.rebuild_worker).
    Each process replays `appliers` partitions at once (default: settings.projector_appliers;
    see `Replayer.to`).
    """
    started, log = time.monotonic(), open_log(settings)
    target = open_target(settings, name)
    try:
        plan = plan_rebuild(settings, name, partitions, bound, target)
        done = 0
        if workers > 1 and len(plan.partitions) > 1 and plan.total:
            done = _bulk_in_workers(settings, target, plan, batch, report, workers)
            plan = plan_rebuild(settings, name, partitions, bound, target)  # what arrived meanwhile
        keys = lock_keys(settings, name, "rebuild", [p.partition for p in plan.partitions])
        with advisory_locks(settings, keys) as busy:
            if busy:
                raise ProjectionError(f"another rebuild of {name!r} is running ({busy[0]}); wait for it or stop it")
            with fewer_collections():
                return _run(settings, log, target, plan, batch, report, started, done,
                            settings.projector_appliers if appliers is None else appliers)
    finally:
        target.close()


def _bulk_in_workers(settings: Settings, target: Shadow, plan: RebuildPlan, batch: int, report: Report | None,
                     workers: int) -> int:
    target.open_shadow().close()  # created (or checked) once, before the workers race for it

    def relay(applied: int, partition: int, position: str) -> None:
        if report is not None:
            report(Progress(plan.projection, "replay", partition, position, applied, max(plan.total, applied)))

    groups = shares({p.partition: p.estimate for p in plan.partitions}, workers)
    return replay_in_workers(settings, plan.projection, groups, plan.bound, batch, relay)


def _run(settings: Settings, log: RedisEventLog, target: Shadow, plan: RebuildPlan, batch: int,
         report: Report | None, started: float, done: int = 0, appliers: int = 1) -> RebuildResult:
    shadow = target.open_shadow()
    replayer = Replayer(log, shadow, None if target.stream_only else settings, batch, report, appliers=appliers)
    try:
        replayer.applied, replayer.total = done, done + plan.total
        cursors = dict(shadow.checkpoints())
        _past_bound(plan, cursors)
        replayer.to({p.partition: plan.bound or log.head(p.partition) for p in plan.partitions}, cursors,
                    {p.partition: p.estimate for p in plan.partitions})
        if not plan.swap:
            return RebuildResult(plan.projection, replayer.applied, time.monotonic() - started, False, cursors)
        replayer.note("indexes")
        target.finish_bulk()
        _catch_up(log, replayer, cursors)
        replayer.phase = "swap"
        live = target.swap(lambda: _to_heads(log, replayer, cursors))
        return RebuildResult(plan.projection, replayer.applied, time.monotonic() - started, True, dict(live))
    finally:
        replayer.close()
        shadow.close()


def _past_bound(plan: RebuildPlan, cursors: dict[int, str]) -> None:
    if plan.bound is None:
        return
    past = [p for p, sid in cursors.items() if stream_id_key(sid) > stream_id_key(plan.bound)]
    if past:
        raise ConfigurationError(
            f"{plan.shadow} already holds partition {past[0]} up to {cursors[past[0]]}, past {plan.bound}; "
            f"discard it first with `memledger replay discard {plan.projection}`")


def _heads(log: RedisEventLog, partitions: Iterable[int]) -> dict[int, str | None]:
    return {p: head for p in partitions if (head := log.head(p)) is not None}


def _to_heads(log: RedisEventLog, replayer: Replayer, cursors: dict[int, str]) -> int:
    heads = _heads(log, range(log.partitions))
    replayer.total = replayer.applied + sum(_stream_estimate(log, p, cursors.get(p, "0-0"), None) for p in heads)
    return replayer.to(heads, cursors)


def _catch_up(log: RedisEventLog, replayer: Replayer, cursors: dict[int, str]) -> None:
    """Follow the head while the live projector runs, until a round finds little to do, so that
    the last round (under the swap's lock, which holds the live projector off) is short."""
    replayer.phase = "catch-up"
    for _ in range(CATCH_UP_ROUNDS):
        if _to_heads(log, replayer, cursors) <= CATCH_UP_LEFT:
            return
