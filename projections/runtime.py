"""The projector runtime: read from the checkpoint, apply in batches, hold leases, dead-letter.

One process runs one projection over all the partitions whose leases it holds. Each
batch of one partition is applied with its checkpoint atomically (the projection's job),
so a crash at any point is followed by re-reading from the stored checkpoint, and a
redelivered batch changes nothing twice. A read-ahead thread reads and decodes the next
batch meanwhile, and a PostgreSQL projection that opts in applies two partitions at once on
two connections (`ProjectorOptions.appliers`): partitions are independent, as they are
between the processes of one projection.

Errors. Bad data in one event (`POISON`: it cannot be decoded, fails validation, or
PostgreSQL refuses a value or a constraint) is retried on its own and then dead-lettered, and
the projector goes on. A server that cannot be reached (StoreUnavailable) is waited out,
within `outage_s`. Anything else raised while applying (a KeyError, a TypeError: a bug in
the projection) would fail on every event alike, so it is never dead-lettered: the projector
finds the event it fails on and stops before it, naming its position.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from typing import TypeVar

from pydantic import ValidationError

from ledger.codec import decode_entry
from ledger.errors import EventError, LedgerError, PoisonEvent, ProjectionError, StoreUnavailable
from ledger.events import RecordedEvent, stream_id_key
from ledger.log import Entry, RedisEventLog
from ledger.postgres import DATA_ERRORS

from .base import FencedOut, Projection
from .lease import Leases

log = logging.getLogger("memledger.projector")
#: How often a projector holding no partition looks for free leases (one holding some looks
#: every lease_ttl_ms / 3, when it renews them): a peer's share left on a clean stop, or
#: released to it, is taken within this.
IDLE_LOOK_S = 0.05
#: A server outage: retried with backoff (each store translates its driver's errors into it).
TRANSIENT = (StoreUnavailable,)
T = TypeVar("T")
#: Errors that point at one event's data rather than at the code or the system: undecodable
#: (EventError), invalid (pydantic's ValidationError), refused by PostgreSQL (a value it cannot
#: store, a violated constraint). Those events are retried singly and then dead-lettered,
#: unless the projection says `skips_poison = False` (the archive: others read history from
#: it), which stops its projector before the event instead.
POISON: tuple[type[Exception], ...] = (EventError, ValidationError, *DATA_ERRORS)


def is_bug(error: Exception) -> bool:
    """An error that is neither bad data (POISON) nor one raised on purpose (a LedgerError,
    FencedOut): a fault of the projection's code, which no event should be blamed for."""
    return not isinstance(error, (*POISON, LedgerError, FencedOut))


def where(name: str, partition: int, r: RecordedEvent) -> str:
    """An event's position, as error messages name it."""
    return f"{name}: event {r.event.event_id} ({r.event.type}) at partition {partition} id {r.position.stream_id}"


@dataclass
class RunStats:
    applied: int = 0
    batches: int = 0
    dead_lettered: int = 0
    cursors: dict[int, str] = field(default_factory=dict)


@dataclass
class ProjectorOptions:
    batch: int = 1000
    block_ms: int = 250
    attempts: int = 3  # tries of a failing event before it is dead-lettered
    fail_fast: bool = False  # rebuilds stop on a poison event instead of dead-lettering it
    outage_s: float = 300.0  # how long to keep retrying while a server is unreachable
    lease_ttl_ms: int = 5000
    # Partitions applied at the same time, each on a handle of its own (`Projection.sibling`):
    # while one waits on its database, another folds. Projections without siblings apply one at a time.
    appliers: int = 2


Item = tuple[int, str, "RecordedEvent | EventError"]  # partition, stream id, event or why it is undecodable


def _decode(entry: Entry) -> Item:
    try:
        return entry[0], entry[1], decode_entry(*entry)
    except EventError as e:
        return entry[0], entry[1], e


@dataclass
class _Collections:
    users: int = 0
    thresholds: tuple[int, ...] = ()
    unfreeze: bool = False  # nobody had frozen objects before the first user came in


_gc_lock, _gc = threading.Lock(), _Collections()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage less often while projecting or replaying.

    A batch keeps tens of thousands of objects alive (events, payloads, rows), and the
    default thresholds make the collector walk them again every few hundred allocations:
    that halved the rebuild's Python throughput, and costs the live projector's decoding
    too. Events and rows form no reference cycles, so collecting rarely costs little
    memory. Objects from before (modules, validators) are frozen out of the collections
    for the duration. The settings are process-wide, so projectors running on several
    threads (`memledger up`) share them and the last one out restores what was there.
    """
    with _gc_lock:
        if _gc.users == 0:
            _gc.thresholds, _gc.unfreeze = gc.get_threshold(), gc.get_freeze_count() == 0
            gc.freeze()
            gc.set_threshold(50_000, 50, 1000)
        _gc.users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc.users -= 1
            if _gc.users == 0:
                gc.set_threshold(*_gc.thresholds)
                if _gc.unfreeze:
                    gc.unfreeze()


def _advance(cursors: dict[int, str], items: list[Item]) -> dict[int, str]:
    after = dict(cursors)
    for partition, stream_id, _ in items:
        after[partition] = stream_id
    return after


class Projector:
    def __init__(self, log_: RedisEventLog, projection: Projection, leases: Leases | None,
                 options: ProjectorOptions | None = None, partitions: Sequence[int] | None = None):
        self.log, self.projection, self.leases = log_, projection, leases
        self.options = options or ProjectorOptions()
        self.partitions = list(range(log_.partitions) if partitions is None else partitions)
        self.stats = RunStats()
        self._held: set[int] = set()
        self._lease_checked = 0.0
        self._counting = threading.Lock()  # appliers count on several threads

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, until_caught_up: bool = False,
            on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
        """Project until `stop` is set (or, with `until_caught_up`, the heads seen at start)."""
        stop = stop or threading.Event()
        self._retrying(self.projection, self.projection.ensure_current)
        targets = {p: h for p in self.partitions if (h := self.log.head(p))} if until_caught_up else None
        block = None if until_caught_up else self.options.block_ms
        # One read-ahead thread: while a batch is written, the next is read and decoded.
        with fewer_collections(), ThreadPoolExecutor(1, thread_name_prefix=f"read-{self.projection.name}") as reader, \
                _Appliers(self.projection, self.options.appliers) as appliers:
            try:
                self._loop(stop, targets, block, reader, appliers, on_batch)
            finally:
                if self.leases is not None:
                    self.leases.release(sorted(self._held))
                    self.leases.leave()  # the others take our share at their next round
        return self.stats

    def _loop(self, stop: threading.Event, targets: dict[int, str] | None, block: int | None,
              reader: ThreadPoolExecutor, appliers: _Appliers, on_batch: Callable[[RunStats], None] | None) -> None:
        ahead: Future[list[Item]] | None = None
        cursors: dict[int, str] = {}
        while not stop.is_set():
            if self._refresh_leases() or ahead is None:
                cursors = self._cursors()  # (re)start from what is stored
                ahead = None
            if targets is not None and self._caught_up(cursors, targets):
                return
            if not cursors:
                stop.wait(IDLE_LOOK_S)
                continue
            items = ahead.result() if ahead is not None else self._read(cursors, block)
            following = _advance(cursors, items)
            ahead = reader.submit(self._read, following, block)
            if not self._apply_items(cursors, items, appliers):
                ahead.cancel()
                ahead = None  # fenced: the stored checkpoints are the truth, re-read them
                continue
            cursors = following
            self.stats.cursors = dict(cursors)
            if items and on_batch:
                on_batch(self.stats)

    def _read(self, cursors: dict[int, str], block: int | None) -> list[Item]:
        entries = self._retrying(None, lambda: self.log.wait_entries(cursors, self.options.batch, block))
        return [_decode(entry) for entry in entries]

    def _cursors(self) -> dict[int, str]:
        stored = self._retrying(self.projection, self.projection.checkpoints)
        self.stats.cursors = {p: stored.get(p, "0-0") for p in self._held}
        return dict(self.stats.cursors)

    @staticmethod
    def _caught_up(cursors: dict[int, str], targets: dict[int, str]) -> bool:
        return all(p in cursors and stream_id_key(cursors[p]) >= stream_id_key(h) for p, h in targets.items())

    def _refresh_leases(self) -> bool:
        """Renew held leases and try to take free ones; True if the held set changed."""
        if self.leases is None:
            changed, self._held = self._held != set(self.partitions), set(self.partitions)
            return changed
        now = time.monotonic()
        if now - self._lease_checked < (self.options.lease_ttl_ms / 3000 if self._held else IDLE_LOOK_S):
            return False
        # Its fair share only, so that N processes of one projection split the partitions.
        leases = self.leases
        held = self._retrying(None, lambda: leases.take_share(self.partitions, self._held))
        if held != self._held:  # a share released to a newcomer, a dead member's taken, a lease lost
            log.info("%s: now holding partitions %s", self.projection.name, sorted(held))
        changed, self._held, self._lease_checked = held != self._held, held, now
        return changed

    # -- applying ----------------------------------------------------------------------

    def _apply_items(self, cursors: dict[int, str], items: list[Item], appliers: _Appliers) -> bool:
        """Apply a read batch, each partition in order (several at once given appliers);
        False if a checkpoint was fenced."""
        groups = [(partition, list(group)) for partition, group in groupby(items, key=lambda item: item[0])]
        work = [functools.partial(self._apply_partition, partition=p, items=g, after=cursors[p]) for p, g in groups]
        fenced = [e for e in appliers.run(work, [len(g) for _, g in groups]) if e is not None]
        for e in fenced:
            # The stored checkpoint is not where we read from: another projector wrote,
            # or our own commit succeeded but its acknowledgement was lost. Either way the
            # next round re-reads the checkpoint and continues from the truth.
            log.info("%s: %s; re-reading the checkpoint", self.projection.name, e)
        return not fenced

    def _apply_partition(self, projection: Projection, partition: int, items: list[Item], after: str) -> None:
        decoded: list[RecordedEvent] = []
        for _, stream_id, event in items:
            if isinstance(event, RecordedEvent):
                decoded.append(event)
                continue
            after = self._flush(projection, partition, decoded, after)
            decoded = []
            self._poison(projection, partition, stream_id, after, None, None, f"undecodable: {event}", 1)
            after = stream_id
        self._flush(projection, partition, decoded, after)

    def _count(self, applied: int = 0, batches: int = 0, dead_lettered: int = 0) -> None:
        with self._counting:
            self.stats.applied += applied
            self.stats.batches += batches
            self.stats.dead_lettered += dead_lettered

    def _flush(self, projection: Projection, partition: int, events: list[RecordedEvent], after: str) -> str:
        if not events:
            return after
        try:
            self._retrying(projection, lambda: projection.apply(partition, events, after))
        except Exception as e:
            if not isinstance(e, POISON) and not is_bug(e):
                raise  # fenced, outdated, unreachable for too long: not about one event
            return self._one_by_one(projection, partition, events, after)  # find the event it fails on
        self._count(applied=len(events), batches=1)
        return events[-1].position.stream_id

    def _one_by_one(self, projection: Projection, partition: int, events: list[RecordedEvent], after: str) -> str:
        """Find the failing event(s) of a batch: apply singly; bad data is retried, then
        dead-lettered; a bug stops the projector before its event."""
        for r in events:
            error = self._apply_one(projection, partition, r, after)
            if error is not None:
                self._poison(projection, partition, r.position.stream_id, after, str(r.event.event_id), r.event.type,
                             f"{type(error).__name__}: {error}", self.options.attempts)
            else:
                self._count(applied=1)
            after = r.position.stream_id
        return after

    def _apply_one(self, projection: Projection, partition: int, r: RecordedEvent, after: str) -> Exception | None:
        """Apply one event: None once applied, else the data error it still fails with after every attempt."""
        error: Exception | None = None
        for attempt in range(1, self.options.attempts + 1):
            try:
                self._retrying(projection, lambda: projection.apply(partition, [r], after))
                return None
            except POISON as e:
                error = e
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            except Exception as e:
                if not is_bug(e):
                    raise
                # The events before it are committed: a restart resumes right at this one.
                raise ProjectionError(
                    f"{where(self.projection.name, partition, r)} failed: {type(e).__name__}: {_one_line(str(e))}; "
                    "that is a fault in the projection's code, not bad data: nothing was dead-lettered and the "
                    "projector stopped before this event (its checkpoint stays there). Fix the code and start the "
                    "projector again: it resumes at this event") from e
        return error

    def _poison(self, projection: Projection, partition: int, stream_id: str, after: str, event_id: str | None,
                event_type: str | None, error: str, attempts: int) -> None:
        name = self.projection.name
        what = (f"{name}: event {event_id or '?'} ({event_type or 'undecodable'}) at partition {partition} "
                f"id {stream_id}")
        if self.options.fail_fast:
            raise PoisonEvent(f"{what} failed: {error}")
        if not self.projection.skips_poison:
            # Dead-lettering moves the checkpoint past the event: for a read model others read
            # history from (the archive), that would hide the event from every replay.
            raise PoisonEvent(
                f"{what} failed: {_one_line(error)}; not skipped: {name} never dead-letters an event, so its "
                "projector stopped before this one (its checkpoint stays there, and no trim passes it). Fix the "
                "cause and start the projector again: it resumes at this event")
        log.error("%s: dead-lettering %s at %s/%s: %s", self.projection.name, event_id, partition, stream_id, error)
        self._retrying(projection, lambda: projection.dead_letter(partition, stream_id, after, event_id, event_type,
                                                                  error, attempts))
        self._count(dead_lettered=1)

    def _retrying(self, projection: Projection | None, action: Callable[[], T]) -> T:
        """Run `action`, riding out a server outage (bounded by `outage_s`) with backoff;
        `projection` is the handle reconnected between tries (None: `action` needs none)."""
        deadline, delay = time.monotonic() + self.options.outage_s, 0.05
        while True:
            try:
                return action()
            except TRANSIENT as e:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"{self.projection.name}: gave up after {self.options.outage_s}s: {e}") from e
                log.warning("%s: %s; retrying in %.2fs", self.projection.name, e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                if projection is not None:
                    _reconnect_quietly(projection)


def _reconnect_quietly(projection: Projection) -> None:
    try:
        projection.reconnect()
    except TRANSIENT:
        pass


class _Appliers:
    """Handles of one projection that apply different partitions at the same time.

    The first is the projector's own; the others are its siblings (`Projection.sibling`),
    opened on entry and closed on exit. Partitions are independent (each has its own
    checkpoint, and a subject lives in one partition), so their batches may commit in any
    order: this is what N processes of a projection do, inside one. A read batch is split
    by partition; each handle takes a share (largest first, to the least loaded) and applies
    it on a thread of its own, and `run` returns once every share is done.
    """

    def __init__(self, projection: Projection, count: int):
        self.handles: list[Projection] = [projection]
        self._count = max(1, count)
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> _Appliers:
        while len(self.handles) < self._count and (twin := self.handles[0].sibling()) is not None:
            self.handles.append(twin)
        if len(self.handles) > 1:
            self._pool = ThreadPoolExecutor(len(self.handles), thread_name_prefix=f"apply-{self.handles[0].name}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for twin in self.handles[1:]:
            twin.close()
        del self.handles[1:]

    def run(self, work: Sequence[Callable[[Projection], None]], sizes: Sequence[int]) -> list[FencedOut | None]:
        """Run each piece of `work` (one partition's, `sizes` its events) with a handle; per
        piece, the FencedOut it ended with, else None. Any other error is raised once every
        piece has ended (the first in `work`'s order)."""
        if self._pool is None or len(work) < 2:
            return self._share(self.handles[0], work)
        shares: list[list[int]] = [[] for _ in self.handles]
        loads = [0] * len(self.handles)
        for i in sorted(range(len(work)), key=lambda i: -sizes[i]):
            lane = loads.index(min(loads))
            shares[lane].append(i)
            loads[lane] += sizes[i]
        futures = {lane: self._pool.submit(self._share, self.handles[lane], [work[i] for i in sorted(share)])
                   for lane, share in enumerate(shares) if share}
        outcomes: dict[int, FencedOut | None] = {}
        failure: tuple[int, BaseException] | None = None
        for lane, future in futures.items():
            try:
                results = future.result()
            except BaseException as e:  # noqa: BLE001 - raised below, after the other shares ended
                first = min(shares[lane])
                if failure is None or first < failure[0]:
                    failure = (first, e)
                continue
            outcomes.update(zip(sorted(shares[lane]), results))
        if failure is not None:
            raise failure[1]
        return [outcomes[i] for i in range(len(work))]

    @staticmethod
    def _share(handle: Projection, pieces: Sequence[Callable[[Projection], None]]) -> list[FencedOut | None]:
        outcomes: list[FencedOut | None] = []
        for piece in pieces:
            try:
                piece(handle)
                outcomes.append(None)
            except FencedOut as e:
                outcomes.append(e)
        return outcomes


def _one_line(error: str) -> str:
    return " | ".join(line.strip() for line in error.splitlines() if line.strip())
