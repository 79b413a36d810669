"""The SSE event id: a cursor over the ledger's partitions, and its compact text form.

An org's events live in several partitions (the partition follows (org, agent)), each ordered
by stream id, so one stream id cannot say how far a client got. The id of every SSE event
names that event's own position first and then, for each other partition of the stream, the
last position delivered before it:

    2:1700000000123-4,0:1700000000100-0,3:1699999999000-7

A partition the cursor does not name is read from its beginning, so a cursor never skips an
event: a client that resumes from it (`Last-Event-ID`, or `?since=`) receives exactly what
came after. Partitions still empty ("0-0") are left out to keep the id short.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ledger.errors import InvalidQuery
from ledger.events import stream_id_key

__all__ = ["decode", "encode"]

#: The longest cursor accepted (a namespace has at most a few hundred partitions).
MAX_LENGTH = 8192
#: The start of a partition: nothing read yet.
START = "0-0"
_PAIR = re.compile(r"(0|[1-9][0-9]{0,5}):(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,19})")
_MAX_SEQ = 2**64 - 1


def encode(cursors: Mapping[int, str], first: int | None = None) -> str:
    """The text of `cursors`, partition `first` (the event's own) leading, the others ascending."""
    order = sorted(cursors, key=lambda p: (p != first, p))
    return ",".join(f"{p}:{cursors[p]}" for p in order if cursors[p] != START or p == first)


def decode(text: str, partitions: int) -> dict[int, str]:
    """The positions a cursor names, by partition; `InvalidQuery` saying what is wrong with it."""
    if not text or len(text) > MAX_LENGTH:
        raise InvalidQuery(f"an event cursor has 1 to {MAX_LENGTH} characters, not {len(text)}")
    cursors: dict[int, str] = {}
    for pair in text.split(","):
        partition, stream_id = _pair(pair, partitions)
        if partition in cursors:
            raise InvalidQuery(f"event cursor names partition {partition} twice")
        cursors[partition] = stream_id
    return cursors


def _pair(pair: str, partitions: int) -> tuple[int, str]:
    match = _PAIR.fullmatch(pair)
    if match is None:
        raise InvalidQuery(f"malformed event cursor part {pair[:40]!r}: expected <partition>:<ms>-<seq>, "
                           "e.g. '2:1700000000123-4' (use an SSE event id as it was sent)")
    partition, stream_id = int(match[1]), f"{match[2]}-{match[3]}"
    if partition >= partitions:
        raise InvalidQuery(f"event cursor names partition {partition}; this ledger has 0..{partitions - 1}")
    if max(stream_id_key(stream_id)) > _MAX_SEQ:
        raise InvalidQuery(f"event cursor position {stream_id!r} is beyond any stream id")
    return partition, stream_id
