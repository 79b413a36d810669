"""Key layout of the Redis read models, and the generations they are written under.

Every key a Redis projection writes for partition N carries that partition's hash tag,
so one Lua script per batch can update the read model and its checkpoint atomically
(and, in Redis Cluster, they share a slot):

    {ns:pN}:rm:<model>:live                 the partition's live pointer: the label queries read
    {ns:pN}:rm:<model>:<label>:cp           the generation's checkpoint (a stream id)
    {ns:pN}:rm:<model>:<label>:dead         its dead letters (a list of JSON objects)
    {ns:pN}:rm:<model>:<label>:<family>:... the read model itself (see each model's module)
    {ns}:rm:<model>:versions                hash: label -> projection version that built it

A *label* names one generation of a read model. The live projector follows the pointer
(the first one claims `v<version>`); a rebuild writes a fresh label, and swapping it in is
setting each partition's pointer (`RedisProjection.promote`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger.errors import ConfigurationError
from ledger.partitions import Keys

LABEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


def check_label(label: str) -> str:
    if not LABEL.match(label) or label == "live":
        raise ConfigurationError(
            f"{label!r} is not a usable key label: use 1-40 of a-z 0-9 _ . - (not 'live')")
    return label


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class ModelKeys:
    """The keys of one Redis read model (`model`, e.g. "trending") in one namespace."""

    namespace: str
    model: str

    def tag(self, partition: int) -> str:
        return Keys(self.namespace).tag(partition)

    def pointer(self, partition: int) -> str:
        return f"{self.tag(partition)}:rm:{self.model}:live"

    def prefix(self, partition: int, label: str) -> str:
        return f"{self.tag(partition)}:rm:{self.model}:{label}"

    def checkpoint(self, partition: int, label: str) -> str:
        return f"{self.prefix(partition, label)}:cp"

    def dead(self, partition: int, label: str) -> str:
        return f"{self.prefix(partition, label)}:dead"

    @property
    def versions(self) -> str:
        return f"{{{self.namespace}}}:rm:{self.model}:versions"
