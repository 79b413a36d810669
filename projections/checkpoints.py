"""The `CheckpointStore` role: where a projection keeps, per partition, the stream id of the
last event it applied.

Reading is the same everywhere (`load`). Moving a checkpoint is a compare-and-set that must
commit atomically with the batch's effects, so each store does it inside its own unit of
work: PostgreSQL in the batch's transaction (`PostgresCheckpoints.advance`), Redis in the
batch's Lua script, on the key `RedisCheckpoints.key` names. Either way a batch read from a
checkpoint that is no longer stored is fenced (`projections.base.FencedOut`), and only a
batch read from the start ("0-0") may create a partition's checkpoint.

Implementations: `projections.postgres.checkpoint_table.PostgresCheckpoints` (table
`projection_checkpoints`: the only module with SQL on it) and
`projections.redis.checkpoint_keys.RedisCheckpoints`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ledger.errors import Timeout
from ledger.eventlog import Receipt
from ledger.events import stream_id_key

__all__ = ["START", "CheckpointStore", "wait_applied"]

#: The checkpoint of a partition nothing was applied of.
START = "0-0"


class CheckpointStore(Protocol):
    """One projection's checkpoints."""

    projection: str

    def load(self) -> dict[int, str]:
        """Every partition's checkpoint; a partition nothing was applied of is absent."""

    def get(self, partition: int) -> str | None:
        """One partition's checkpoint, None if nothing was applied of it."""


def wait_applied(reached: Callable[[], str | None], receipt: Receipt, timeout: float, projection: str) -> None:
    """Return once `reached()` (a partition's checkpoint) is at or past the receipt's position;
    polls with a backoff from 1 ms to 50 ms and raises `Timeout` (naming what to run) at the deadline."""
    deadline, delay = time.monotonic() + timeout, 0.001
    target = stream_id_key(receipt.stream_id)
    while True:
        position = reached()
        if position is not None and stream_id_key(position) >= target:
            return
        if time.monotonic() + delay > deadline:
            raise Timeout(f"{projection} has not reached {receipt.partition}/{receipt.stream_id} within "
                          f"{timeout}s; is a projector running (`memledger up`)?")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
