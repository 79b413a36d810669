"""What every Redis read model shares: generations, the atomic checkpoint, dead letters, digests.

Exactly-once effect: each batch of one partition is ONE Lua script call (the model's
`script`). It first checks the live pointer (for a live projector) and compare-and-sets
the checkpoint, and only then writes the batch's effects; a script runs atomically on the
server, so after a crash (SIGKILL anywhere) either the whole batch and its checkpoint
are there or neither is, and the redelivered batch is applied once. A batch read from
a stale checkpoint gets 'fenced' back and writes nothing. Every key the script touches
carries the partition's hash tag (see `keys`), so in Redis Cluster it is one slot.

Generations, for replay (issue 5): a projection opened with `label=None` is the *live*
one: it writes the generation named by each partition's pointer (claiming `v<version>`
the first time). Opened with a label it writes that generation only (a rebuild's
shadow) and never publishes notifications. `promote()` points every partition at the
label (the swap); the live projector's next batch then finds the pointer moved, gets
FencedOut, re-reads its checkpoints (now the new generation's) and continues there.
`digest()` hashes the generation's whole state deterministically and `drop()` deletes it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import orjson
import redis

from ledger.connections import RedisClient, connect_redis, disconnect, node_client
from ledger.errors import OutdatedReadModel
from ledger.events import RecordedEvent
from ledger.scripts import LuaScript
from ledger.settings import Settings

from ..base import DeadLetter, FencedOut, LaterApplied, RedriveRefused
from .calls import call, pipelined
from .checkpoint_keys import RedisCheckpoints
from .keys import ModelKeys, check_label, text

if TYPE_CHECKING:
    from ..shadow import Shadow

__all__ = ["Arg", "RedisProjection", "call", "pipelined"]

Arg = str | bytes | int | float
SCAN_COUNT = 1000
HLL_MAGIC = b"HYLL"


class RedisProjection(ABC):
    """Base of the Redis read models; subclasses set `name`, `version`, `script`, `arguments`.

    Construct with a redis client, the namespace and partition count, and optionally a
    `label` (see the module docstring); `open(settings, label)` does it from settings.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    script: ClassVar[str] = ""  # the batch script in projections/lua/
    skips_poison: ClassVar[bool] = True  # see projections.base.Projection

    def __init__(self, client: RedisClient, namespace: str, partitions: int, label: str | None = None):
        self.client, self.namespace, self.partitions = client, namespace, partitions
        self.keys = ModelKeys(namespace, self.name)
        self.fixed_label = None if label is None else check_label(label)
        self._labels: dict[int, str] = {}
        self._apply = LuaScript(client, self.script, package="projections")
        self._dead = LuaScript(client, "rm_dead_letter.lua", package="projections")

    @classmethod
    def open(cls, settings: Settings, target: str | None = None) -> Self:
        """The live projection (`target` None, or the namespace's schema name, which is what
        the live PostgreSQL read models are opened with), or generation `target`."""
        label = None if target in (None, settings.db_schema) else target
        return cls(connect_redis(settings), settings.namespace, settings.partitions, label,
                   **cls.options(settings))

    @classmethod
    def shadow(cls, settings: Settings, kind: str = "rebuild") -> Shadow:
        from .generations import RedisShadow

        return RedisShadow(settings, cls, kind)

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        """Model-specific constructor arguments taken from settings."""
        return {}

    # -- what a subclass provides -------------------------------------------------------

    @abstractmethod
    def arguments(self, partition: int, events: Sequence[RecordedEvent]) -> list[Arg]:
        """The script's model-specific arguments (ARGV[5..]) for a batch: pure, no I/O."""

    # -- generations -------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.fixed_label is None

    @property
    def default_label(self) -> str:
        return f"v{self.version}"

    def label(self, partition: int) -> str:
        """The generation this projection writes for `partition`."""
        if self.fixed_label is not None:
            return self.fixed_label
        if partition not in self._labels:
            self._read_labels()
        return self._labels[partition]

    def _read_labels(self) -> None:
        values = pipelined(self.client, lambda pipe: [pipe.get(self.keys.pointer(p)) for p in range(self.partitions)],
                           f"reading the {self.name} pointers")
        self._labels = {p: text(v) if v else self.default_label for p, v in enumerate(values)}

    def labels(self) -> set[str]:
        return {self.label(p) for p in range(self.partitions)}

    def exists(self) -> bool:
        """Whether this projection's generation was ever claimed (a rebuild to resume or discard)."""
        if self.live:
            return any(pipelined(self.client, lambda pipe: [pipe.exists(self.keys.pointer(p))
                                                            for p in range(self.partitions)], "reading pointers"))
        return bool(call(lambda: self.client.hexists(self.keys.versions, self.label(0)), "reading versions"))

    def promote(self) -> None:
        """Make this projection's label the live generation of every partition (the swap)."""
        if self.fixed_label is None:
            return
        label = self.fixed_label
        pipelined(self.client, lambda pipe: [pipe.set(self.keys.pointer(p), label) for p in range(self.partitions)],
                  f"promoting {self.name} {label}")

    # -- the Projection protocol -------------------------------------------------------

    def ensure_current(self) -> None:
        """Claim the generation(s) written; refuse one built by another projection version."""
        if self.live:
            pipelined(self.client, lambda pipe: [pipe.set(self.keys.pointer(p), self.default_label, nx=True)
                                                 for p in range(self.partitions)], f"claiming {self.name}")
            self._read_labels()
        for label in sorted(self.labels()):
            stored = self._stored_version(label)
            if stored != self.version:
                raise OutdatedReadModel(
                    f"the {self.name!r} read model (key label {label!r}) was built by projection version "
                    f"{stored}, this code is version {self.version}; rebuild it with "
                    f"`memledger replay rebuild {self.name}`")

    def _stored_version(self, label: str) -> int:
        def claim(pipe: Any) -> None:
            pipe.hsetnx(self.keys.versions, label, self.version)
            pipe.hget(self.keys.versions, label)
        return int(pipelined(self.client, claim, f"reading the {self.name} version")[1])

    def stored_version(self) -> int | None:
        """The version that built the generation(s) written; of several, the oldest decides."""
        labels = sorted(self.labels())
        stored = call(lambda: self.client.hmget(self.keys.versions, labels), f"reading the {self.name} versions")
        versions = {int(v) for v in stored if v is not None}
        return min(versions) if versions else None

    @property
    def checkpoint_store(self) -> RedisCheckpoints:
        return RedisCheckpoints(self.client, self.keys, self.partitions, self.label)

    def checkpoints(self) -> dict[int, str]:
        if self.live:
            self._read_labels()
        return self.checkpoint_store.load()

    def apply(self, partition: int, events: Sequence[RecordedEvent], after: str) -> None:
        self.write(partition, self.arguments(partition, events), after, events[-1].position.stream_id)

    def write(self, partition: int, args: list[Arg], after: str, to: str) -> None:
        """Run the batch script with `arguments` already computed: the effects and the move of
        the checkpoint from `after` to `to`, atomically (the bench times the two apart)."""
        self._run(self._apply, partition, after, to, args)

    def dead_letter(self, partition: int, stream_id: str, after: str, event_id: str | None,
                    event_type: str | None, error: str, attempts: int) -> None:
        letter = orjson.dumps({"partition": partition, "stream_id": stream_id, "event_id": event_id,
                               "event_type": event_type, "error": error, "attempts": attempts})
        self._run(self._dead, partition, after, stream_id, [letter])

    def _run(self, script: LuaScript, partition: int, after: str, to: str, args: list[Arg]) -> None:
        label = self.label(partition)
        keys = [self.checkpoint_store.key(partition), self.keys.pointer(partition)]
        head = [after, to, "" if self.fixed_label else label, self.keys.prefix(partition, label)]
        status = text(script.run(keys, head + args))
        if status == "moved":
            self._labels.clear()  # the pointer names another generation now: re-read it
            raise FencedOut(f"{self.name} partition {partition}: the live generation is no longer {label!r}")
        if status == "fenced":
            raise FencedOut(f"{self.name} partition {partition} moved past {after}")

    def sibling(self) -> None:
        """None: a Redis model's apply is mostly Python (decode, fold), which a second thread of
        the same process cannot run alongside; a second process can (partition leases)."""
        return None

    def reconnect(self) -> None:
        disconnect(self.client)

    def close(self) -> None:
        self.client.close()

    # -- inspection, for operators and rebuilds ----------------------------------------

    def dead_letters(self) -> list[dict[str, Any]]:
        """The letters kept beside the generation's keys, as stored (JSON objects)."""
        lists = pipelined(self.client, lambda pipe: [pipe.lrange(self.keys.dead(p, self.label(p)), 0, -1)
                                                     for p in range(self.partitions)], "reading dead letters")
        return [orjson.loads(item) for items in lists for item in items]

    def list_dead_letters(self, include_resolved: bool = False) -> list[DeadLetter]:
        """Every letter (a Redis read model's letters are never resolved: a rebuild drops them
        with the old generation)."""
        return [DeadLetter(None, self.name, int(d["partition"]), str(d["stream_id"]), d.get("event_id"),
                           d.get("event_type"), str(d["error"]), int(d["attempts"]), None, None)
                for d in self.dead_letters()]

    def redrive(self, letter: DeadLetter, event: RecordedEvent, later_applied: LaterApplied) -> None:
        raise RedriveRefused(f"{self.name} keeps its dead letters in Redis and is not re-driven event by event; "
                             f"rebuild it: `memledger replay rebuild {self.name}`")

    def _generation_keys(self) -> dict[int, list[bytes]]:
        found: dict[int, list[bytes]] = {}
        for p in range(self.partitions):
            pattern, node = self.keys.prefix(p, self.label(p)) + ":*", self._node(p)
            found[p] = sorted(call(lambda: list(node.scan_iter(match=pattern, count=SCAN_COUNT)), "listing keys"))
        return found

    def digest(self) -> dict[str, str]:
        """Family of keys -> "keys:sha256" over the generation's whole state (checkpoints and
        dead letters excluded). Key names enter without their label, so two generations
        holding the same state digest alike; HyperLogLogs enter by their estimate, as equal
        register sets may be encoded differently (sparse or dense)."""
        families: dict[str, tuple[int, Any]] = {}
        for p, names in self._generation_keys().items():
            prefix = len(self.keys.prefix(p, self.label(p))) + 1
            values = self._values(self._node(p), names)
            for name, value in zip(names, values):
                relative = text(name)[prefix:]
                family = relative.split(":", 1)[0]
                if family in ("cp", "dead"):
                    continue
                count, h = families.get(family) or (0, hashlib.sha256())
                h.update(f"p{p}:{relative}".encode() + b"\0" + repr(value).encode() + b"\n")
                families[family] = (count + 1, h)
        return {f: f"{n}:{h.hexdigest()}" for f, (n, h) in sorted(families.items())}

    def _node(self, partition: int) -> redis.Redis:
        """The server holding the partition's keys (on a cluster, its node: scans and pipelines
        there see only that node's keys and may use every command, PFCOUNT included)."""
        return node_client(self.client, self.keys.tag(partition))

    def _values(self, client: redis.Redis, names: list[bytes]) -> list[Any]:
        kinds = [text(k) for k in pipelined(client, lambda pipe: [pipe.type(n) for n in names], "typing keys")]
        readers = {"string": lambda pipe, n: pipe.get(n), "hash": lambda pipe, n: pipe.hgetall(n),
                   "zset": lambda pipe, n: pipe.zrange(n, 0, -1, withscores=True),
                   "list": lambda pipe, n: pipe.lrange(n, 0, -1), "set": lambda pipe, n: pipe.smembers(n),
                   "none": lambda pipe, n: pipe.exists(n)}
        values = pipelined(client, lambda pipe: [readers[k](pipe, n) for k, n in zip(kinds, names)], "digest")
        hlls = [i for i, v in enumerate(values) if isinstance(v, bytes) and v.startswith(HLL_MAGIC)]
        counts = pipelined(client, lambda pipe: [pipe.pfcount(names[i]) for i in hlls], "digest")
        for i, count in zip(hlls, counts):
            values[i] = ("hll", count)
        # Lists keep their order (it is the state); hashes, sets and sorted sets are sorted.
        return [sorted(v.items()) if k == "hash" else sorted(v) if k in ("set", "zset") else v
                for k, v in zip(kinds, values)]

    def drop(self) -> int:
        """Delete every key of the generation(s) written (and, for the live one, the pointers)."""
        names = [n for keys in self._generation_keys().values() for n in keys]
        labels = sorted(self.labels())
        extra = [self.keys.pointer(p) for p in range(self.partitions)] if self.live else []
        for i in range(0, len(names), 500):
            call(lambda: self.client.unlink(*names[i:i + 500]), "dropping keys")
        if extra:
            call(lambda: self.client.unlink(*extra), "dropping pointers")
        call(lambda: self.client.hdel(self.keys.versions, *labels), "dropping versions")
        self._labels.clear()
        return len(names)
