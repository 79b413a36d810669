"""Checkpoints of the Redis read models: one string key per partition and generation.

`{ns:pN}:rm:<model>:<label>:cp` holds the stream id of the last event the generation
applied. The batch scripts (projections/lua/*.lua) compare-and-set it together with the
batch's effects, on the key `key` names; this class reads them.
"""

from __future__ import annotations

from collections.abc import Callable


from ledger.connections import RedisClient
from .keys import ModelKeys, text
from .calls import pipelined

__all__ = ["RedisCheckpoints"]


class RedisCheckpoints:
    """CheckpointStore of one Redis read model; `label_of(partition)` names the generation read."""

    def __init__(self, client: RedisClient, keys: ModelKeys, partitions: int, label_of: Callable[[int], str]):
        self.client, self.keys, self.partitions, self.label_of = client, keys, partitions, label_of
        self.projection = keys.model

    def key(self, partition: int) -> str:
        return self.keys.checkpoint(partition, self.label_of(partition))

    def load(self) -> dict[int, str]:
        values = pipelined(self.client, lambda pipe: [pipe.get(self.key(p)) for p in range(self.partitions)],
                           f"reading the {self.projection} checkpoints")
        return {p: text(v) for p, v in enumerate(values) if v}

    def get(self, partition: int) -> str | None:
        value = pipelined(self.client, lambda pipe: [pipe.get(self.key(partition))],
                          f"reading a {self.projection} checkpoint")[0]
        return text(value) if value else None
