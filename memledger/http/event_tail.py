"""Reading an org's new events from the ledger after a cursor, one short call at a time.

`EventTail.poll` reads what each partition of the stream gained since the last call (through
`App.heads` and `App.events`, i.e. the Redis Streams: nothing a pub/sub channel could drop)
and returns it in log order, each event with its SSE id (memledger/http/event_cursor.py).
A call never blocks waiting for events, so the SSE route runs it in a worker thread between
short sleeps and stops the moment a client goes away; a blocking `App.follow` could only
notice that when the org's next event arrives.

Exactly once, in order: per partition the tail keeps two positions. `scanned` is how far the
stream was read; `delivered` is what the ids carry. An event's id names, for every partition,
a position up to which each matching event was handed out before it, so resuming from any id
re-reads nothing already delivered and skips nothing.
"""

from __future__ import annotations

import heapq
from dataclasses import replace
from typing import TYPE_CHECKING

from ledger.events import RecordedEvent, stream_id_key

from . import event_cursor

if TYPE_CHECKING:
    from memledger.app import App
    from memledger.log_reader import EventFilter

__all__ = ["EventTail"]

#: Events read from one partition per call (a larger backlog comes over several calls).
BATCH = 500


def _key(stream_id: str) -> tuple[int, int]:
    return stream_id_key(stream_id)


def _log_order(record: RecordedEvent) -> tuple[int, int, int]:
    ms, seq = record.position.key
    return ms, seq, record.position.partition


class EventTail:
    """New events of `filt` (already the caller's org and agent) after `cursors`.

    Parameters:
        app: an App scoped to the caller; only `heads` and `events` are used.
        filt: which events; the App narrows it to its own org (and agent).
        cursors: per partition, the last position already delivered; None starts at the heads.
    """

    def __init__(self, app: App, filt: EventFilter, cursors: dict[int, str] | None = None):
        self.app, self.filt = app, filt
        heads = app.heads(filt)
        start = heads if cursors is None else {p: cursors.get(p, event_cursor.START) for p in heads}
        self.scanned: dict[int, str] = dict(start)
        self.delivered: dict[int, str] = dict(start)

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions this tail reads (those of the org, or of its one agent)."""
        return frozenset(self.scanned)

    @property
    def cursor(self) -> str:
        """Where the tail stands now, as a cursor (what `?since=` takes)."""
        return event_cursor.encode(self.delivered)

    def poll(self, heads: dict[int, str] | None = None) -> list[tuple[RecordedEvent, str]]:
        """The matching events appended since the last call, in log order, each with its SSE id.

        `heads` (of this tail's partitions) saves reading them when the caller just did; events
        appended after them are found by the next call.
        """
        self.delivered = dict(self.scanned)  # everything scanned so far was handed out
        fresh: list[list[RecordedEvent]] = []
        for partition, head in (heads if heads is not None else self.app.heads(self.filt)).items():
            if _key(head) > _key(self.scanned.get(partition, event_cursor.START)):
                fresh.append(self._read(partition, head))
        return [(record, self._deliver(record)) for record in heapq.merge(*fresh, key=_log_order)]

    def _deliver(self, record: RecordedEvent) -> str:
        partition = record.position.partition
        self.delivered[partition] = record.position.stream_id
        return event_cursor.encode(self.delivered, first=partition)

    def _read(self, partition: int, head: str) -> list[RecordedEvent]:
        """Up to BATCH matching events of one partition in (scanned, head], advancing `scanned`."""
        after, limit = self.scanned.get(partition, event_cursor.START), BATCH
        since, until = _key(after)[0], _key(head)[0]
        while True:
            # Ranges are read by millisecond, so the cursor's own millisecond comes back: drop
            # what is not after it. Should a whole batch be that (a large batch appended in one
            # millisecond), read a larger one rather than stall.
            found = self.app.events(replace(self.filt, since_ms=since, until_ms=until), partition, limit)
            fresh = [r for r in found if _key(after) < r.position.key <= _key(head)]
            if len(found) < limit or found[-1].position.key >= _key(head):
                self.scanned[partition] = head
                return fresh
            if fresh:
                self.scanned[partition] = fresh[-1].position.stream_id
                return fresh
            limit *= 2
