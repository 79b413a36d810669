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

from typing import Protocol

__all__ = ["START", "CheckpointStore"]

#: The checkpoint of a partition nothing was applied of.
START = "0-0"


class CheckpointStore(Protocol):
    """One projection's checkpoints."""

    projection: str

    def load(self) -> dict[int, str]:
        """Every partition's checkpoint; a partition nothing was applied of is absent."""

    def get(self, partition: int) -> str | None:
        """One partition's checkpoint, None if nothing was applied of it."""
