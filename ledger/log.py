"""The ledger on Redis Streams: `RedisEventLog`, the `EventLog` role's implementation.

Keys of one partition share the hash tag `{<ns>:p<N>}` (ledger/partitions.py), so every
script below touches one slot: append.lua (the atomic append), trim.lua (trimming and its
mark), count.lua (counting a range on the server). Redis errors become the ledger's errors
here, at the edge: a lost connection is `StoreUnavailable`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import time


from .codec import decode_entry
from .connections import REDIS_TRANSIENT, RedisClient, is_cluster
from .durability import read_persistence
from .errors import (
    ConfigurationError,
    SessionClosed,
    StoreUnavailable,
    SubjectExists,
    SubjectForgotten,
    UnknownSubject,
    VersionConflict,
)
from .eventlog import (
    Append,
    Entry,
    EventLog,
    Kind,
    Mode,
    Outcome,
    Receipt,
    ServerFacts,
    Subject,
    SubjectState,
    Trimmed,
)
from .events import RecordedEvent, stream_id_key
from .partitions import Keys, partition_for
from .ratelimit import RateLimiter
from .scripts import LuaScript

if TYPE_CHECKING:
    import psycopg

    from .settings import Settings

# Re-exported: these names lived here before the role had a module of its own.
__all__ = ["Append", "Entry", "Kind", "Mode", "Outcome", "Receipt", "RedisEventLog", "Subject", "SubjectState",
           "Trimmed"]

T = TypeVar("T")

#: Entries `load` sends per round trip.
LOAD_CHUNK = 2000
#: Key suffixes of a partition that belong to the ledger; `partition_key` refuses them.
OWN_SUFFIXES = ("stream", "subjects", "trimmed", "idem:")
#: On a Redis Cluster, how often a waiting projector looks at its streams again (see `_poll`).
CLUSTER_POLL_S = 0.05
#: The prefix append.lua puts before a subject's version -> its status (none: "live").
_MARKS: dict[str, Literal["ended", "open", "closed"]] = {"-": "ended", "+": "open", "~": "closed"}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(kind: str, org_id: str, agent_id: str, subject_id: str) -> str:
    """A subject's field in the partition's subjects hash (see append.lua)."""
    return f"{kind}/{org_id}/{agent_id}/{subject_id}"


def _id_key(stream_id: str) -> tuple[int, int]:
    try:
        return stream_id_key(stream_id)
    except ValueError:
        raise ValueError(f"{stream_id!r} is not a stream id (<ms>-<seq>)") from None


def _stored_receipt(partition: int, value: bytes | None) -> Receipt | None:
    """A receipt as append.lua stores it under an idempotency key: "stream id|version|event ids"."""
    if value is None:
        return None
    stream_id, version, ids = _text(value).split("|", 2)
    return Receipt(partition, stream_id, int(version), tuple(ids.split(",")) if ids else (), duplicate=True)


def _unavailable(action: Callable[[], T]) -> T:
    try:
        return action()
    except REDIS_TRANSIENT as e:
        raise StoreUnavailable(f"Redis is unreachable: {e}") from e


class RedisEventLog(EventLog):
    """The partitioned ledger on one Redis. Appends never trim; reads decode and upcast.

    `client` and `keys` are this module's (and ledger/archive.py's): other packages use the
    `EventLog` methods.
    """

    def __init__(self, client: RedisClient, namespace: str, partitions: int, idempotency_ttl: int = 604800):
        self.client = client
        self.keys = Keys(namespace)
        self.partitions = partitions
        self.idempotency_ttl = idempotency_ttl
        self._append = LuaScript(client, "append.lua")
        self._trim = LuaScript(client, "trim.lua")
        self._count = LuaScript(client, "count.lua")

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    def check_layout(self) -> None:
        """Refuse to run with a partition count other than the one the ledger was created with.

        Changing it would route an agent's next events to another stream and break
        per-memory ordering.
        """
        def stored() -> int:
            self.client.hsetnx(self.keys.meta, "partitions", self.partitions)
            return int(self.client.hget(self.keys.meta, "partitions") or self.partitions)

        found = _unavailable(stored)
        if found != self.partitions:
            raise ConfigurationError(
                f"namespace {self.keys.namespace!r} was created with {found} partitions, "
                f"not {self.partitions}; set MEMLEDGER_PARTITIONS={found}"
            )

    # -- appending ---------------------------------------------------------------------

    def append_many(self, items: Sequence[Append]) -> list[Outcome]:
        """Append commands in one round trip: one script call per partition touched."""
        return self.append_chunks([items])

    def append_chunks(self, chunks: Iterable[Sequence[Append]]) -> list[Outcome]:
        """Each chunk's script calls (one per partition it touches) are sent before the next
        chunk is taken from `chunks`; the replies are read after the last (one round trip)."""
        outcomes: list[Outcome | None] = []
        placed: list[tuple[int, list[int], list[Append]]] = []  # per call: partition, places, items
        partitions = self.partitions

        def calls() -> Iterator[tuple[list[str], list[Any]]]:
            for chunk in chunks:
                base = len(outcomes)
                outcomes.extend([None] * len(chunk))
                groups: dict[int, list[int]] = defaultdict(list)
                for offset, item in enumerate(chunk):
                    groups[partition_for(item.org_id, item.agent_id, partitions)].append(offset)
                for partition, offsets in groups.items():
                    items = [chunk[o] for o in offsets]
                    placed.append((partition, [base + o for o in offsets], items))
                    yield self._script_call(partition, items)

        replies = self._append.run_many(calls())
        for (partition, places, items), reply in zip(placed, replies):
            for place, item, answer in zip(places, items, reply):
                outcomes[place] = self._outcome(partition, item, answer)
        return [o for o in outcomes if o is not None]

    def _idempotency_key(self, partition: int, item: Append) -> str | None:
        if item.idempotency_key is None:
            return None
        return self.keys.idempotency(partition, item.org_id, item.agent_id, item.idempotency_key)

    def _script_call(self, partition: int, items: list[Append]) -> tuple[list[str], list[Any]]:
        subjects = self.keys.subjects(partition)
        keys = [self.keys.stream(partition), subjects]
        args: list[Any] = [self.idempotency_ttl, len(items)]
        # The command path's hottest loop: the subject field (see `_field`) is built inline.
        for item in items:
            expected = -1 if item.expected_version is None else item.expected_version
            field = f"{item.kind}/{item.org_id}/{item.agent_id}/{item.subject_id}"
            if item.idempotency_key is None:
                keys.append(subjects)
                args += [field, expected, item.mode, 0, "", len(item.bodies)]
            else:
                keys.append(self.keys.idempotency(partition, item.org_id, item.agent_id, item.idempotency_key))
                args += [field, expected, item.mode, 1, ",".join(item.event_ids), len(item.bodies)]
            args += item.bodies
        return keys, args

    def original_receipts(self, items: Sequence[Append]) -> list[Receipt | None]:
        partitions = [self.partition_of(item.org_id, item.agent_id) for item in items]
        keys = [self._idempotency_key(p, item) for p, item in zip(partitions, items)]

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    if key is not None:
                        pipe.get(key)
                return pipe.execute()

        values = iter(_unavailable(read) if any(k is not None for k in keys) else [])
        return [None if key is None else _stored_receipt(p, next(values)) for p, key in zip(partitions, keys)]

    @staticmethod
    def _outcome(partition: int, item: Append, answer: list[bytes]) -> Outcome:
        status = _text(answer[0])
        if status == "ok":
            return Receipt(partition, _text(answer[1]), int(answer[2]), item.event_ids)
        if status == "dup":
            ids = tuple(_text(answer[3]).split(",")) if answer[3] else ()
            return Receipt(partition, _text(answer[1]), int(answer[2]), ids, duplicate=True)
        current, subject = int(answer[1]), item.subject_id
        if status == "conflict":
            return VersionConflict(
                f"{subject} is at version {current}, not {item.expected_version}; "
                "re-read it and retry with the current version", current)
        if status == "exists":
            return SubjectExists(f"{subject} already exists (version {current}); use a new id or an update")
        if status == "unknown":
            return UnknownSubject(f"{subject} does not exist in this org and agent")
        if status == "closed":
            return SessionClosed(f"session {subject} is closed (version {current}): it takes no more "
                                 "messages; start a new session")
        return SubjectForgotten(f"{subject} was forgotten or expired (version {current}); it takes no changes")

    def load(self, partition: int, entries: Iterable[tuple[str, int, bytes]]) -> int:
        items, last = list(entries), self.head(partition) or "0-0"
        for sid, _, _ in items:
            if _id_key(sid) <= _id_key(last):
                raise ValueError(f"cannot load {sid} into partition {partition} after {last}: ids must be above "
                                 "the partition's head, in order; nothing was loaded")
            last = sid
        stream = self.keys.stream(partition)
        for start in range(0, len(items), LOAD_CHUNK):
            def write(chunk: list[tuple[str, int, bytes]] = items[start:start + LOAD_CHUNK]) -> None:
                with self.client.pipeline(transaction=False) as pipe:
                    for sid, version, body in chunk:
                        pipe.xadd(stream, {"v": version, "e": body}, id=sid)
                    pipe.execute()

            _unavailable(write)
        return len(items)

    def subject_state(self, subject: Subject) -> SubjectState:
        partition = self.partition_of(subject.org_id, subject.agent_id)
        field = _field(subject.kind, subject.org_id, subject.agent_id, subject.subject_id)
        raw: Any = _unavailable(lambda: self.client.hget(self.keys.subjects(partition), field))
        if raw is None:
            return SubjectState()
        text = _text(raw)
        # append.lua prefixes the version with "-" once the subject has ended, "+" while it is
        # an open conversation and "~" once that conversation is closed.
        status = _MARKS.get(text[:1])
        return SubjectState(int(text), "live") if status is None else SubjectState(int(text[1:]), status)

    # -- reading -----------------------------------------------------------------------

    def read(self, partition: int, after: str = "0-0", count: int = 1000, until: str = "+") -> list[RecordedEvent]:
        entries: Any = _unavailable(lambda: self.client.xrange(self.keys.stream(partition), f"({after}", until,
                                                               count=count))
        return [decode_entry(partition, sid, fields) for sid, fields in entries]

    def read_entries(self, partition: int, after: str = "0-0", count: int = 1000, until: str = "+") -> list[Entry]:
        entries: Any = _unavailable(lambda: self.client.xrange(self.keys.stream(partition), f"({after}", until,
                                                               count=count))
        return [(partition, _text(sid), fields) for sid, fields in entries]

    def read_reverse(self, partition: int, until: str = "+", count: int = 1000,
                     since: str = "-") -> list[RecordedEvent]:
        entries: Any = _unavailable(lambda: self.client.xrevrange(self.keys.stream(partition), max=until, min=since,
                                                                  count=count))
        return [decode_entry(partition, sid, fields) for sid, fields in entries]

    def wait_entries(self, cursors: dict[int, str], count: int, block_ms: int | None) -> list[Entry]:
        if is_cluster(self.client):
            return self._poll(cursors, count, block_ms)
        streams = {self.keys.stream(p): sid for p, sid in cursors.items()}
        by_key = {self.keys.stream(p): p for p in cursors}
        # redis-py types `streams` too narrowly (a dict of str to str is what XREAD takes).
        reply: Any = _unavailable(
            lambda: self.client.xread(streams, count=count, block=block_ms))  # type: ignore[arg-type]
        return [(by_key[_text(key)], _text(sid), fields) for key, entries in reply or [] for sid, fields in entries]

    def _poll(self, cursors: dict[int, str], count: int, block_ms: int | None) -> list[Entry]:
        """`wait_entries` on a Redis Cluster. One XREAD may only name streams of one slot, so each
        partition's stream is read by its own XREAD (one pipelined round trip for all); and one
        blocking XREAD could wait on one partition only, so while nothing is there it looks again
        every CLUSTER_POLL_S until `block_ms` (0: for ever, as XREAD's BLOCK 0) has passed."""
        deadline = time.monotonic() + (block_ms or 0) / 1000
        while True:
            found = self._read_each(cursors, count)
            left = deadline - time.monotonic()
            if found or block_ms is None or (block_ms and left <= 0):
                return found
            time.sleep(CLUSTER_POLL_S if not block_ms else min(CLUSTER_POLL_S, left))

    def _read_each(self, cursors: dict[int, str], count: int) -> list[Entry]:
        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for p, sid in cursors.items():
                    pipe.xread({self.keys.stream(p): sid}, count=count)
                return pipe.execute()

        replies = _unavailable(read) if cursors else []
        return [(p, _text(sid), fields) for p, reply in zip(cursors, replies)
                for _, entries in reply or [] for sid, fields in entries]

    def head(self, partition: int) -> str | None:
        last: Any = _unavailable(lambda: self.client.xrevrange(self.keys.stream(partition), count=1))
        return _text(last[0][0]) if last else None

    def first(self, partition: int) -> str | None:
        oldest: Any = _unavailable(lambda: self.client.xrange(self.keys.stream(partition), count=1))
        return _text(oldest[0][0]) if oldest else None

    def length(self, partition: int) -> int:
        return int(_unavailable(lambda: self.client.xlen(self.keys.stream(partition))))

    def count_after(self, partition: int, after: str, cap: int, before: str | None = None,
                    types: Collection[str] | None = None) -> int:
        if before is not None and _id_key(before) <= _id_key(after):
            return 0
        end = "+" if before is None else f"({before}"
        return int(self._count.run([self.keys.stream(partition)], [f"({after}", end, cap, *(types or ())]))

    def history(self, partition: int, after: str = "0-0", until: str | None = None,
                source: Settings | psycopg.Connection[Any] | None = None) -> Iterator[RecordedEvent]:
        from .archive import read_from  # the archive imports this module (and psycopg)

        return read_from(source, self, partition, after, until)

    # -- trimming ----------------------------------------------------------------------

    def trim(self, partition: int, below_id: str) -> Trimmed:
        _id_key(below_id)  # a malformed id is refused here, not half-way through the script
        removed, mark = self._trim.run([self.keys.stream(partition), self.keys.trimmed(partition)], [below_id])
        return Trimmed(int(removed), _text(mark) or None)

    def trimmed_through(self, partition: int) -> str | None:
        value: Any = _unavailable(lambda: self.client.get(self.keys.trimmed(partition)))
        return None if value is None else _text(value)

    # -- the server and the helpers that share it --------------------------------------

    def server(self) -> ServerFacts:
        info: Any = _unavailable(lambda: self.client.info("server"))
        version = info.get("redis_version")
        return ServerFacts("redis", None if version is None else str(version), read_persistence(self.client))

    def rate_limiter(self, rate: float, burst: int) -> RateLimiter:
        return RateLimiter(self.client, self.keys, rate, burst)

    def script(self, name: str, package: str = "ledger") -> LuaScript:
        return LuaScript(self.client, name, package)

    def partition_key(self, partition: int, name: str) -> str:
        if not name or name.startswith(OWN_SUFFIXES):
            raise ValueError(f"{name!r} is not a helper's key name: the ledger uses {', '.join(OWN_SUFFIXES)}")
        return f"{self.keys.tag(partition)}:{name}"

    def redis_client_for_workers(self) -> RedisClient:
        return self.client

    def close(self) -> None:
        self.client.close()
