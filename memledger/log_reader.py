"""Reading the ledger as a person does: filtered ranges across partitions, the newest N, new events live.

Events of different partitions are merged by stream id (then partition: partitions can share
a millisecond), so a range reads in the order the log was written.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from ledger.errors import InvalidQuery
from ledger.eventlog import EventLog
from ledger.events import RecordedEvent, stream_id_key
from ledger.partitions import partition_for

__all__ = ["EventFilter", "PartitionReader", "follow", "newest", "oldest", "partitions_for"]

#: The largest sequence part of a stream id.
MAX_SEQ = 2**64 - 1
#: How long one blocking read of `follow` waits before it looks again.
FOLLOW_BLOCK_MS = 2000
#: Entries read per round trip.
READ_BATCH = 500


@dataclass(frozen=True)
class EventFilter:
    """Which events to show. Times are those of the log (stream ids), in Unix milliseconds."""

    types: frozenset[str] = frozenset()
    org: str | None = None
    agent: str | None = None
    subject: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, record: RecordedEvent) -> bool:
        event, ms = record.event, record.position.key[0]
        return ((not self.types or event.type in self.types)
                and self.org in (None, event.org_id)
                and self.agent in (None, event.agent_id)
                and self.subject in (None, event.subject_id)
                and (self.since_ms is None or ms >= self.since_ms)
                and (self.until_ms is None or ms <= self.until_ms))

    @property
    def after(self) -> str:
        """The exclusive XRANGE start that includes everything from `since_ms` on."""
        if not self.since_ms:
            return "0-0"
        return f"{self.since_ms - 1}-{MAX_SEQ}"

    @property
    def until(self) -> str:
        """The inclusive XRANGE end (a bare millisecond id covers all its sequence numbers)."""
        return "+" if self.until_ms is None else str(self.until_ms)


def partitions_for(count: int, partition: int | None, org: str | None, agent: str | None) -> list[int]:
    """The partitions worth reading: one when given or implied by org and agent, else all."""
    if partition is not None:
        if not 0 <= partition < count:
            raise InvalidQuery(f"partition {partition} does not exist (0..{count - 1})")
        return [partition]
    if org is not None and agent is not None:
        return [partition_for(org, agent, count)]
    return list(range(count))


def log_order(record: RecordedEvent) -> tuple[int, int, int]:
    """Stream ids order events across partitions; partitions can share a millisecond, so break ties."""
    ms, seq = record.position.key
    return ms, seq, record.position.partition


#: Reads one partition's events in (after, until]: `EventLog.iter_partition`, or one that also
#: reads what a trim moved to the archive.
PartitionReader = Callable[[int, str, str], Iterable[RecordedEvent]]


def oldest(log: EventLog, partitions: Iterable[int], filt: EventFilter, limit: int,
           read: PartitionReader | None = None) -> list[RecordedEvent]:
    """The first `limit` matching events across `partitions`, oldest first (lazily read)."""
    reader: PartitionReader = read or log.iter_partition
    streams = [islice(filter(filt.matches, reader(p, filt.after, filt.until)), limit) for p in partitions]
    return list(islice(heapq.merge(*streams, key=log_order), limit))


def newest(log: EventLog, heads: dict[int, str], filt: EventFilter, limit: int) -> list[RecordedEvent]:
    """The last `limit` matching events at or before each partition's `heads` id, oldest first."""
    start = "-" if filt.since_ms is None else f"{filt.since_ms}-0"
    streams = [islice(filter(filt.matches, log.iter_reverse(p, _earlier(head, filt.until_ms), start, READ_BATCH)),
                      limit) for p, head in heads.items() if head != "0-0"]
    return list(islice(heapq.merge(*streams, key=log_order, reverse=True), limit))[::-1]


def _earlier(head: str, until_ms: int | None) -> str:
    if until_ms is None or stream_id_key(head)[0] <= until_ms:
        return head
    return str(until_ms)


def follow(log: EventLog, cursors: dict[int, str], filt: EventFilter,
           block_ms: int = FOLLOW_BLOCK_MS) -> Iterator[RecordedEvent]:
    """Matching events appended after `cursors`, as they arrive; never ends by itself."""
    cursors = dict(cursors)
    while True:
        for record in log.wait(cursors, READ_BATCH, block_ms):
            cursors[record.position.partition] = record.position.stream_id
            if filt.matches(record):
                yield record
