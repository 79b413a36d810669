"""The ledger on Redis Streams: atomic appends (Lua) and reads, per partition."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from .codec import decode_entry
from .errors import (
    CommandError,
    ConfigurationError,
    StoreUnavailable,
    SubjectExists,
    SubjectForgotten,
    UnknownSubject,
    VersionConflict,
)
from .events import Position, RecordedEvent
from .partitions import Keys
from .scripts import LuaScript


@dataclass(frozen=True, slots=True)
class Append:
    """One command's encoded events, with the checks the append script must make."""

    partition: int
    subject_field: str  # "<kind>/<org>/<agent>/<subject id>"
    expected_version: int  # -1: any
    mode: str  # create | change | end | touch (see append.lua)
    idempotency_key: str | None  # the full Redis key, or None
    event_ids: tuple[str, ...]
    bodies: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of an append, and a consistency token to wait on (`wait_for`)."""

    partition: int
    stream_id: str
    subject_version: int
    event_ids: tuple[str, ...]
    duplicate: bool = False

    @property
    def position(self) -> Position:
        return Position(self.partition, self.stream_id)


Outcome = Receipt | CommandError
Entry = tuple[int, str, dict[Any, Any]]  # partition, stream id, raw fields


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stored_receipt(partition: int, value: bytes | None) -> Receipt | None:
    """A receipt as append.lua stores it under an idempotency key: "stream id|version|event ids"."""
    if value is None:
        return None
    stream_id, version, ids = _text(value).split("|", 2)
    return Receipt(partition, stream_id, int(version), tuple(ids.split(",")) if ids else (), duplicate=True)


class RedisEventLog:
    """The partitioned ledger. Appends never trim; reads decode and upcast."""

    def __init__(self, client: redis.Redis, namespace: str, partitions: int, idempotency_ttl: int = 604800):
        self.client = client
        self.keys = Keys(namespace)
        self.partitions = partitions
        self.idempotency_ttl = idempotency_ttl
        self._append = LuaScript(client, "append.lua")

    def check_layout(self) -> None:
        """Refuse to run with a partition count other than the one the ledger was created with.

        Changing it would route an agent's next events to another stream and break
        per-memory ordering.
        """
        try:
            self.client.hsetnx(self.keys.meta, "partitions", self.partitions)
            stored = int(self.client.hget(self.keys.meta, "partitions") or self.partitions)
        except redis.ConnectionError as e:
            raise StoreUnavailable(f"Redis is unreachable: {e}") from e
        if stored != self.partitions:
            raise ConfigurationError(
                f"namespace {self.keys.namespace!r} was created with {stored} partitions, "
                f"not {self.partitions}; set MEMLEDGER_PARTITIONS={stored}"
            )

    # -- appending ---------------------------------------------------------------------

    def append(self, item: Append) -> Outcome:
        return self.append_many([item])[0]

    def append_many(self, items: Sequence[Append]) -> list[Outcome]:
        """Append commands in one round trip: one script call per partition touched."""
        groups: dict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            groups[item.partition].append(index)
        replies = self._append.run_many(
            [self._script_call(partition, [items[i] for i in indexes]) for partition, indexes in groups.items()])
        outcomes: list[Outcome | None] = [None] * len(items)
        for (partition, indexes), reply in zip(groups.items(), replies):
            for index, answer in zip(indexes, reply):
                outcomes[index] = self._outcome(partition, items[index], answer)
        return [o for o in outcomes if o is not None]

    def _script_call(self, partition: int, items: list[Append]) -> tuple[list[str], list[Any]]:
        stream, subjects = self.keys.stream(partition), self.keys.subjects(partition)
        keys = [stream, subjects]
        args: list[Any] = [self.idempotency_ttl, len(items)]
        for item in items:
            keys.append(item.idempotency_key or subjects)
            idem = item.idempotency_key is not None
            args += [item.subject_field, item.expected_version, item.mode,
                     1 if idem else 0, ",".join(item.event_ids) if idem else "", len(item.bodies)]
            args += item.bodies
        return keys, args

    def original_receipts(self, items: Sequence[Append]) -> list[Receipt | None]:
        """The receipt each item's idempotency key already holds (None: no key, or unseen).

        Read-only, one round trip; the append script stays the authority (a key seen
        here may expire before an append, which then simply appends).
        """
        keyed = [item for item in items if item.idempotency_key is not None]
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for item in keyed:
                    pipe.get(item.idempotency_key)  # type: ignore[arg-type]
                values = iter(pipe.execute())
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(f"Redis is unreachable: {e}") from e
        return [None if item.idempotency_key is None else _stored_receipt(item.partition, next(values))
                for item in items]

    @staticmethod
    def _outcome(partition: int, item: Append, answer: list[bytes]) -> Outcome:
        status = _text(answer[0])
        subject = item.subject_field.split("/", 3)[-1]
        if status == "ok":
            return Receipt(partition, _text(answer[1]), int(answer[2]), item.event_ids)
        if status == "dup":
            ids = tuple(_text(answer[3]).split(",")) if answer[3] else ()
            return Receipt(partition, _text(answer[1]), int(answer[2]), ids, duplicate=True)
        current = int(answer[1])
        if status == "conflict":
            return VersionConflict(
                f"{subject} is at version {current}, not {item.expected_version}; "
                "re-read it and retry with the current version", current)
        if status == "exists":
            return SubjectExists(f"{subject} already exists (version {current}); use a new id or an update")
        if status == "unknown":
            return UnknownSubject(f"{subject} does not exist in this org and agent")
        return SubjectForgotten(f"{subject} was forgotten or expired (version {current}); it takes no changes")

    # -- reading -----------------------------------------------------------------------

    def read(self, partition: int, after: str = "0-0", count: int = 1000, until: str = "+") -> list[RecordedEvent]:
        """Up to `count` events of one partition strictly after stream id `after`."""
        try:
            entries: Any = self.client.xrange(self.keys.stream(partition), f"({after}", until, count=count)
        except redis.ConnectionError as e:
            raise StoreUnavailable(f"Redis is unreachable: {e}") from e
        return [decode_entry(partition, sid, fields) for sid, fields in entries]

    def iter_partition(self, partition: int, after: str = "0-0", until: str = "+", batch: int = 2000) -> Iterator[RecordedEvent]:
        while True:
            chunk = self.read(partition, after, batch, until)
            yield from chunk
            if len(chunk) < batch:
                return
            after = chunk[-1].position.stream_id

    def wait_new(self, cursors: dict[int, str], count: int, block_ms: int) -> list[RecordedEvent]:
        """Events after each partition's cursor; blocks up to `block_ms` when there are none."""
        return [decode_entry(*entry) for entry in self.wait_entries(cursors, count, block_ms)]

    def wait_entries(self, cursors: dict[int, str], count: int, block_ms: int | None) -> list[Entry]:
        """Undecoded entries after each cursor (a projector decodes them one by one, so an
        undecodable entry can be dead-lettered instead of stopping the batch)."""
        streams = {self.keys.stream(p): sid for p, sid in cursors.items()}
        by_key = {self.keys.stream(p): p for p in cursors}
        try:
            reply: Any = self.client.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(f"Redis is unreachable: {e}") from e
        return [(by_key[_text(key)], _text(sid), fields) for key, entries in reply or [] for sid, fields in entries]

    def head(self, partition: int) -> str | None:
        """The id of the partition's newest entry, or None while it is empty."""
        last: Any = self.client.xrevrange(self.keys.stream(partition), count=1)
        return _text(last[0][0]) if last else None

    def length(self, partition: int) -> int:
        return int(self.client.xlen(self.keys.stream(partition)))
