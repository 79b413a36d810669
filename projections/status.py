"""Lag: how far each projection's checkpoint is behind the head of each partition."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.archive import stream_range
from ledger.events import stream_id_key
from ledger.log import RedisEventLog

from .base import Projection

LAG_COUNT_CAP = 10_000  # counting further back than this is not worth an XRANGE


@dataclass(frozen=True)
class PartitionLag:
    projection: str
    partition: int
    checkpoint: str
    head: str | None
    behind: int  # events after the checkpoint (capped at LAG_COUNT_CAP)
    behind_ms: int  # head time minus checkpoint time


def partition_lag(log: RedisEventLog, projection: Projection) -> list[PartitionLag]:
    stored = projection.checkpoints()
    out = []
    for p in range(log.partitions):
        checkpoint, head = stored.get(p, "0-0"), log.head(p)
        behind = 0
        if head is not None and stream_id_key(head) > stream_id_key(checkpoint):
            # TODO(EventLog): count_after(partition, after, cap): count without fetching the entries.
            behind = len(stream_range(log, p, f"({checkpoint}", "+", LAG_COUNT_CAP))
        head_ms = stream_id_key(head)[0] if head else 0
        out.append(PartitionLag(projection.name, p, checkpoint, head, behind,
                                max(0, head_ms - stream_id_key(checkpoint)[0]) if behind else 0))
    return out
