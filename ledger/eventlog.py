"""The `EventLog` role: everything a user of the ledger does with it, whatever stores it.

`RedisEventLog` (ledger/log.py) implements it on Redis Streams. A Redis Cluster log (issue
19) implements the same role and runs the same contract tests (tests/eventlog_contract.py).
Callers hold an `EventLog`: they name subjects, idempotency keys and positions, never keys
of the store. Partitions, the write-side subject state and idempotency keys are the log's.

Positions are stream ids, "<ms>-<seq>", ordered per partition. Ranges read forward take an
exclusive `after` (a cursor: the last id seen) and an inclusive `until`; ranges read newest
first take inclusive `until` and `since`. An `until` or `since` may be a bare millisecond
("1700000000000"), which covers every sequence number of that millisecond.

This module loads no driver: commands.decide imports `SubjectState`, `Mode` and `Kind`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .codec import decode_entry
from .errors import CommandError
from .events import Position, RecordedEvent, stream_id_key
from .partitions import partition_for

if TYPE_CHECKING:
    import psycopg

    from .connections import RedisClient
    from .durability import Persistence
    from .ratelimit import RateLimiter
    from .scripts import LuaScript
    from .settings import Settings

__all__ = ["MAX_SEQ", "Append", "Entry", "EventLog", "Kind", "Mode", "Outcome", "Receipt", "ServerFacts", "Subject",
           "SubjectState", "Trimmed", "previous_id"]

#: The largest sequence part of a stream id.
MAX_SEQ = 2**64 - 1

#: How a command's events change their subject (checked atomically by the append):
#: create (the subject must be absent), change (it must exist and be live), end (as change,
#: then it takes no more changes: forgotten, expired), touch (as change, version unchanged),
#: open (a conversation's message: creates the session when absent, else it must be an open
#: conversation; bumps), close (an open conversation takes no more messages; bumps).
Mode = Literal["create", "change", "end", "touch", "open", "close"]
#: What a subject is: "m" a memory, "s" a session, "k" an API key.
Kind = Literal["m", "s", "k"]

#: One undecoded entry: (partition, stream id, stored fields: `v` subject version, `e` body).
Entry = tuple[int, str, dict[Any, Any]]


@dataclass(frozen=True, slots=True)
class Subject:
    """A memory or session as the write side knows it. Ids are unique per org and agent."""

    kind: Kind
    org_id: str
    agent_id: str
    subject_id: str


@dataclass(frozen=True, slots=True)
class SubjectState:
    """What the write side knows of a subject: its version and whether it is live.

    "open" and "closed" are live sessions that are conversations (created by a message):
    open ones take messages, closed ones no more; both take every other change."""

    version: int = 0
    status: Literal["absent", "live", "ended", "open", "closed"] = "absent"


@dataclass(frozen=True, slots=True)
class Append:
    """One command's encoded events, and the condition under which the log may append them.

    The log picks the partition from (org_id, agent_id) and keeps the subject's state and the
    idempotency key under keys of its own; callers only name them.
    """

    org_id: str
    agent_id: str
    kind: Kind
    subject_id: str
    mode: Mode
    event_ids: tuple[str, ...]
    bodies: tuple[bytes, ...]  # encoded events (ledger.codec.encode), appended in this order
    expected_version: int | None = None  # None: any version
    idempotency_key: str | None = None  # the caller's key, unique per org and agent; None: no retry protection

    @property
    def subject(self) -> Subject:
        return Subject(self.kind, self.org_id, self.agent_id, self.subject_id)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of an append, and a consistency token to wait on (`wait_for`)."""

    partition: int
    stream_id: str  # of the command's last event
    subject_version: int
    event_ids: tuple[str, ...]
    duplicate: bool = False  # an idempotent retry: the original append's receipt, nothing appended

    @property
    def position(self) -> Position:
        return Position(self.partition, self.stream_id)


Outcome = Receipt | CommandError


class Trimmed(NamedTuple):
    """What `EventLog.trim` did to one partition."""

    removed: int  # entries this call removed
    mark: str | None  # the newest id any trim ever removed from the partition; None: never trimmed


@dataclass(frozen=True)
class ServerFacts:
    """The server holding the log, as `memledger info` and health checks show it."""

    product: str  # e.g. "redis"
    version: str | None
    persistence: Persistence


def previous_id(stream_id: str) -> str:
    """The greatest stream id below `stream_id` ("5-0" -> "4-18446744073709551615"); "0-0" stays."""
    ms, seq = stream_id_key(stream_id)
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{MAX_SEQ}" if ms else "0-0"


class EventLog(ABC):
    """The partitioned ledger: atomic, idempotent appends; ordered reads; trimming by position.

    Attributes:
        partitions: the number of partitions, fixed for the life of a namespace.
    """

    partitions: int

    @property
    @abstractmethod
    def namespace(self) -> str:
        """The namespace every key and table of this ledger lives under."""

    def partition_of(self, org_id: str, agent_id: str) -> int:
        """The partition holding every event of one org's agent (stable across processes)."""
        return partition_for(org_id, agent_id, self.partitions)

    # -- appending -------------------------------------------------------------------------

    def append(self, item: Append) -> Outcome:
        return self.append_many([item])[0]

    @abstractmethod
    def append_many(self, items: Sequence[Append]) -> list[Outcome]:
        """Append commands, each atomically and in one round trip; one outcome per item, in order.

        An idempotency key seen before returns the original receipt (`duplicate=True`) and
        appends nothing; an expected version other than the current one is a VersionConflict;
        `create` of an existing subject is SubjectExists; any other mode on an absent subject is
        UnknownSubject, on an ended one SubjectForgotten; a message (`open`) for a session that
        is not an open conversation, or a `close` of one, is SessionClosed. A rejected item appends nothing.
        """

    def append_chunks(self, chunks: Iterable[Sequence[Append]]) -> list[Outcome]:
        """`append_many` of every chunk's items, in order, for a caller that prepares the chunks
        as it goes (a generator): a log may send chunk k to its server before taking chunk
        k+1, so the caller's work on the next chunk overlaps the server's on this one. Items
        of one subject keep their order across chunks. One outcome per item, in order."""
        return self.append_many([item for chunk in chunks for item in chunk])

    @abstractmethod
    def load(self, partition: int, entries: Iterable[tuple[str, int, bytes]]) -> int:
        """Write history as it is: (stream id, subject version, encoded event) in id order, all
        above the partition's head; returns how many. No append checks, no write-side subject
        state and no idempotency: for benchmarks and imports into a new namespace, never for
        commands. An id out of order, or at or below the head, is a ValueError: then nothing is loaded."""

    @abstractmethod
    def original_receipts(self, items: Sequence[Append]) -> list[Receipt | None]:
        """The receipt each item's idempotency key already holds (None: no key, or not seen).

        Read-only; `append_many` stays the authority (a key may expire in between).
        """

    @abstractmethod
    def subject_state(self, subject: Subject) -> SubjectState:
        """The write side's current state of `subject` (exact, no read-model lag)."""

    def has_subject(self, subject: Subject) -> bool:
        """Was `subject` ever created (live or ended)?"""
        return self.subject_state(subject).status != "absent"

    # -- reading ---------------------------------------------------------------------------

    @abstractmethod
    def read(self, partition: int, after: str = "0-0", count: int = 1000, until: str = "+") -> list[RecordedEvent]:
        """Up to `count` events of one partition in (after, until], oldest first, upcast."""

    @abstractmethod
    def read_entries(self, partition: int, after: str = "0-0", count: int = 1000, until: str = "+") -> list[Entry]:
        """Up to `count` undecoded entries of one partition in (after, until], oldest first.

        For scans that look at one or two envelope fields of many events (a re-drive's search
        for a later event of the same subject) without paying for decoding and upcasting each.
        """

    def iter_partition(self, partition: int, after: str = "0-0", until: str = "+",
                       batch: int = 2000) -> Iterator[RecordedEvent]:
        """Every event of one partition in (after, until], oldest first, read `batch` at a time."""
        while True:
            chunk = self.read(partition, after, batch, until)
            yield from chunk
            if len(chunk) < batch:
                return
            after = chunk[-1].position.stream_id

    @abstractmethod
    def read_reverse(self, partition: int, until: str = "+", count: int = 1000,
                     since: str = "-") -> list[RecordedEvent]:
        """Up to `count` events of one partition in [since, until], newest first."""

    def iter_reverse(self, partition: int, until: str = "+", since: str = "-",
                     batch: int = 500) -> Iterator[RecordedEvent]:
        """Every event of one partition in [since, until], newest first (`log tail`)."""
        while True:
            chunk = self.read_reverse(partition, until, batch, since)
            yield from chunk
            last = chunk[-1].position.stream_id if chunk else "0-0"
            if len(chunk) < batch or last == "0-0":
                return
            until = previous_id(last)

    def event_at(self, partition: int, stream_id: str) -> RecordedEvent | None:
        """The event at one position of the stream; None if it holds none there (see `history`)."""
        found = self.read(partition, previous_id(stream_id), 1, stream_id)
        return found[0] if found and found[0].position.stream_id == stream_id else None

    @abstractmethod
    def wait_entries(self, cursors: dict[int, str], count: int, block_ms: int | None) -> list[Entry]:
        """Undecoded entries after each partition's cursor, across partitions; blocks up to
        `block_ms` (None: do not block) while there are none. A projector decodes them one
        by one (`ledger.codec.decode_entry`), so one undecodable entry can be dead-lettered."""

    def wait(self, cursors: dict[int, str], count: int, block_ms: int | None) -> list[RecordedEvent]:
        """Events after each partition's cursor; blocks up to `block_ms` while there are none."""
        return [decode_entry(*entry) for entry in self.wait_entries(cursors, count, block_ms)]

    def wait_new(self, cursors: dict[int, str], count: int, block_ms: int) -> list[RecordedEvent]:
        """The former name of `wait`."""
        return self.wait(cursors, count, block_ms)

    @abstractmethod
    def head(self, partition: int) -> str | None:
        """The id of the partition's newest event; None while it holds none."""

    @abstractmethod
    def first(self, partition: int) -> str | None:
        """The id of the oldest event the stream still holds (older ones may be archived)."""

    @abstractmethod
    def length(self, partition: int) -> int:
        """How many events the stream of one partition holds (trimmed ones excluded)."""

    @abstractmethod
    def count_after(self, partition: int, after: str, cap: int, before: str | None = None,
                    types: Collection[str] | None = None) -> int:
        """How many events of one partition lie in (after, before), `before` None meaning the
        head, counting only `types` when given; looks at `cap` events at most (lag, backlogs)."""

    @abstractmethod
    def history(self, partition: int, after: str = "0-0", until: str | None = None,
                source: Settings | psycopg.Connection[Any] | None = None) -> Iterator[RecordedEvent]:
        """Every event of one partition in (after, until], from the archive and then the stream.

        `source` is where the archive is (settings, or an open connection); None reads the
        stream alone. A part neither holds (trimmed, not archived) raises HistoryGap rather
        than being skipped.
        """

    # -- trimming --------------------------------------------------------------------------

    @abstractmethod
    def trim(self, partition: int, below_id: str) -> Trimmed:
        """Remove the stream's entries below `below_id` (never by length) and record the newest
        removed id (`trimmed_through`) in the same atomic step.

        The caller decides what may go (everything below must be archived and applied by
        every consumer: replay/trim.py); `history` then reads it from the archive.
        """

    @abstractmethod
    def trimmed_through(self, partition: int) -> str | None:
        """The newest id any trim removed from the partition; None if it was never trimmed."""

    # -- the server and the helpers that share it ------------------------------------------

    @abstractmethod
    def server(self) -> ServerFacts:
        """What the server holding the log is, and whether it keeps what it acknowledges."""

    @abstractmethod
    def rate_limiter(self, rate: float, burst: int) -> RateLimiter:
        """The per-org token bucket of the command gate, on the log's server."""

    @abstractmethod
    def script(self, name: str, package: str = "ledger") -> LuaScript:
        """Lua script `<package>/lua/<name>` on the log's server, for a helper whose keys are
        built with `partition_key` (projection leases): one script call touches one partition."""

    @abstractmethod
    def partition_key(self, partition: int, name: str) -> str:
        """A key of one partition for a helper beside the log (e.g. "lease:<projection>"); it
        shares the partition's hash slot, so one script may touch it with the partition's keys."""

    @abstractmethod
    def redis_client_for_workers(self) -> RedisClient:
        """The Redis client of the log's server, for the workers' own keys (dramatiq queue,
        daily counts, heartbeats: workers.broker.WorkerKeys), never for the ledger's keys."""

    @abstractmethod
    def close(self) -> None:
        """Release the log's connections."""
