"""Lag: how far each projection's checkpoint is behind the head of each partition."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.eventlog import EventLog
from ledger.events import stream_id_key

from .base import Projection

#: Events after a checkpoint counted at most (the log looks at no more than this many).
LAG_COUNT_CAP = 10_000


@dataclass(frozen=True)
class PartitionLag:
    projection: str
    partition: int
    checkpoint: str
    head: str | None
    behind: int  # events after the checkpoint (capped at LAG_COUNT_CAP)
    behind_ms: int  # head time minus checkpoint time


def partition_lag(log: EventLog, projection: Projection) -> list[PartitionLag]:
    stored = projection.checkpoints()
    out = []
    for p in range(log.partitions):
        checkpoint, head = stored.get(p, "0-0"), log.head(p)
        behind = 0
        if head is not None and stream_id_key(head) > stream_id_key(checkpoint):
            behind = log.count_after(p, checkpoint, LAG_COUNT_CAP)
        head_ms = stream_id_key(head)[0] if head else 0
        out.append(PartitionLag(projection.name, p, checkpoint, head, behind,
                                max(0, head_ms - stream_id_key(checkpoint)[0]) if behind else 0))
    return out
