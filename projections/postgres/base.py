"""What every PostgreSQL projection shares: connection, versions, checkpoint, dead letters.

A batch is one transaction: the checkpoint's compare-and-set first (it locks the row, so a
stale projector waits, then is fenced), then the projection's rows (`write`), then the
commit hooks' work (the query cache's invalidation); a crash anywhere loses all or nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, overload

import psycopg

from ledger.errors import OutdatedReadModel
from ledger.events import RecordedEvent
from ledger.postgres import connect as _connect
from ledger.postgres import translated
from ledger.settings import Settings

from ..base import DeadLetter, LaterApplied, RedriveRefused
from ..fold import MemoryChange
from . import checkpoint_table as checkpoints
from . import dead_letters
from .checkpoint_table import PostgresCheckpoints
from .digest import sum_digest

if TYPE_CHECKING:
    from ..shadow import Shadow

__all__ = ["Batch", "CommitHook", "PostgresProjection", "connect"]


@dataclass(frozen=True)
class Batch(Sequence[RecordedEvent]):
    """One batch as its commit hooks see it: its events (it is their sequence) and what it
    changed, as the projection's `write` reported it."""

    partition: int
    events: Sequence[RecordedEvent]
    changed: tuple[MemoryChange, ...] = ()  # the memory rows it created, changed or removed

    @overload
    def __getitem__(self, index: int) -> RecordedEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RecordedEvent]: ...

    def __getitem__(self, index: int | slice) -> RecordedEvent | Sequence[RecordedEvent]:
        return self.events[index]

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[RecordedEvent]:
        return iter(self.events)


class CommitHook(Protocol):
    """Work tied to the commit of a batch (the query cache's invalidation: projections.redis.cache).

    `before_commit` runs inside the batch's transaction, after its rows are written (and
    its checkpoint row locked); raising rolls the batch back. `after_commit` runs once
    the transaction is over, committed or not (also when the batch was fenced out).
    """

    def before_commit(self, projection: object, partition: int, batch: Batch) -> None: ...

    def after_commit(self, projection: object, partition: int, batch: Batch) -> None: ...


def connect(conninfo: str, schema: str, autocommit: bool = False, synchronous: bool = True) -> psycopg.Connection:
    """A connection with `schema` as its search_path (`synchronous=False`: asynchronous commits).
    Kept for callers of this name; `ledger.postgres.connect` is the one that opens it."""
    return _connect(conninfo, schema, autocommit, None if synchronous else False)


class PostgresProjection(ABC):
    """Base class: subclasses set `name`, `version`, `tables` and implement `write(cur, events)`."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ()  # the tables this projection owns (a rebuild swaps exactly these)
    # False lets a projection commit asynchronously (no fsync per batch): a PostgreSQL crash
    # may then lose its last few batches, rows and checkpoint together, and they are
    # re-applied from the ledger. Never for the archive: streams are trimmed below its
    # checkpoint, so a lost archive commit would lose events.
    durable_commit: ClassVar[bool] = True
    skips_poison: ClassVar[bool] = True  # see projections.base.Projection
    stream_only: ClassVar[bool] = False  # True for the archive itself: it is rebuilt from the stream alone
    # A rebuild drops the owned tables' secondary indexes while it replays and builds them once
    # at the end; a projection whose writes look rows up by a secondary index opts out.
    defer_indexes: ClassVar[bool] = True
    # Whether a re-drive must refuse when a later event of the same subject was already applied.
    redrive_in_order: ClassVar[bool] = True
    # Whether `sibling` opens a second handle, so that the projector applies two partitions at
    # once (one folds while the other's database works). Opt in where partitions share nothing
    # but commutative counters, and the constructor takes only the connection and schema.
    parallel_partitions: ClassVar[bool] = False

    def __init__(self, conninfo: str, schema: str):
        self.conninfo, self.schema = conninfo, schema
        self.commit_hooks: list[CommitHook] = []
        self.conn = connect(conninfo, schema, synchronous=self.durable_commit)
        self.prepare(self.conn)

    @classmethod
    def open(cls, settings: Settings, target: str | None = None) -> Self:
        """The projection on the configured database, writing the live schema or `target` (a shadow's)."""
        from ledger.connections import database_url

        return cls(database_url(settings), target or settings.db_schema)

    @classmethod
    def shadow(cls, settings: Settings, kind: str = "rebuild") -> Shadow:
        from .shadow_schema import PostgresShadow

        return PostgresShadow(settings, cls, kind)

    def prepare(self, conn: psycopg.Connection) -> None:
        """Per-connection set-up (temporary staging tables); runs after every (re)connect."""

    def sibling(self) -> Self | None:
        """A second handle on the same tables (its own connection, the same commit hooks), or
        None unless the projection opts in (`parallel_partitions`)."""
        if not self.parallel_partitions:
            return None
        twin = type(self)(self.conninfo, self.schema)
        twin.commit_hooks = list(self.commit_hooks)
        return twin

    def reconnect(self) -> None:
        self.close()
        self.conn = connect(self.conninfo, self.schema, synchronous=self.durable_commit)
        self.prepare(self.conn)

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    # -- versions and checkpoints ------------------------------------------------------

    def stored_version(self) -> int | None:
        with translated(), self.conn.transaction():
            row = self.conn.execute("SELECT version FROM projection_versions WHERE projection = %s",
                                    (self.name,)).fetchone()
        return None if row is None else int(row[0])

    def ensure_current(self) -> None:
        """Refuse a read model built by another projection version; claim an empty one."""
        stored = self.stored_version()
        if stored == self.version:
            return
        if stored is None and not self.checkpoints():
            with translated(), self.conn.transaction():
                self.conn.execute(
                    "INSERT INTO projection_versions (projection, version) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (self.name, self.version))
            return
        raise OutdatedReadModel(
            f"the {self.name!r} read model was built by projection version {stored}, this code is "
            f"version {self.version}; rebuild it with `memledger replay rebuild {self.name}`")

    @property
    def checkpoint_store(self) -> PostgresCheckpoints:
        return PostgresCheckpoints(self.conn, self.name)

    def checkpoints(self) -> dict[int, str]:
        return self.checkpoint_store.load()

    # -- applying ----------------------------------------------------------------------

    def apply(self, partition: int, events: Sequence[RecordedEvent], after: str) -> None:
        def body(cur: psycopg.Cursor[Any]) -> tuple[MemoryChange, ...]:
            checkpoints.advance(cur, self.name, partition, after, events[-1].position.stream_id)
            return self.write(cur, events) or ()
        self._in_batch(partition, events, body)

    def _in_batch(self, partition: int, events: Sequence[RecordedEvent],
                  body: Callable[[psycopg.Cursor[Any]], tuple[MemoryChange, ...]]) -> None:
        """Run `body` in one transaction with the commit hooks around its commit."""
        batch = Batch(partition, events)
        try:
            with translated(f"PostgreSQL ({self.name} partition {partition})"), self.conn.transaction(), \
                    self.conn.cursor() as cur:
                batch = Batch(partition, events, body(cur))
                for hook in self.commit_hooks:
                    hook.before_commit(self, partition, batch)
        finally:
            for hook in self.commit_hooks:
                hook.after_commit(self, partition, batch)

    @abstractmethod
    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> tuple[MemoryChange, ...] | None:
        """Write the effects of `events` inside the caller's transaction; what it changed that
        commit hooks care about (the memory rows, for the query cache), if anything."""

    # -- dead letters ------------------------------------------------------------------

    def dead_letter(self, partition: int, stream_id: str, after: str, event_id: str | None,
                    event_type: str | None, error: str, attempts: int) -> None:
        with translated(), self.conn.transaction(), self.conn.cursor() as cur:
            checkpoints.advance(cur, self.name, partition, after, stream_id)
            dead_letters.record(cur, self.name, partition, stream_id, event_id, event_type, error, attempts)

    def list_dead_letters(self, include_resolved: bool = False) -> list[DeadLetter]:
        with translated(), self.conn.transaction():
            return dead_letters.letters(self.conn, self.name, include_resolved)

    def redrive(self, letter: DeadLetter, event: RecordedEvent, later_applied: LaterApplied) -> None:
        def body(cur: psycopg.Cursor[Any]) -> tuple[MemoryChange, ...]:
            # Locking the checkpoint row holds the live projector of this partition off, so
            # the ordering check below stays true until we commit.
            checkpoint = checkpoints.lock(cur, self.name, letter.partition)
            if self.redrive_in_order and (later := later_applied(checkpoint)) is not None:
                raise RedriveRefused(f"a later event of {event.event.subject_id} ({later}) was already applied; "
                                     "re-driving this one would apply it out of order: run "
                                     f"`memledger replay rebuild {self.name}`")
            if not dead_letters.mark_redriven(cur, letter.id):
                raise RedriveRefused("already re-driven by someone else")
            return self.write(cur, [event]) or ()
        self._in_batch(letter.partition, [event], body)

    # -- inspection --------------------------------------------------------------------

    def digest(self) -> dict[str, str]:
        with translated(), self.conn.transaction():
            return {t: sum_digest(self.conn, self.schema, t) for t in self.tables}
