"""The recent messages of each conversation (working memory): a capped list per session in
Redis, with a TTL, in front of the PostgreSQL `session_messages` table.

Choices, and why:

- One list per conversation, `P:m:<org>/<agent>/<session>`, oldest first, trimmed to the
  last `cap` messages (`MEMLEDGER_SESSION_CACHE_MESSAGES`), each entry `<seq>|<json>` (the
  number in front lets the scripts check continuity without decoding JSON). Every write
  and every hit sets its TTL (`MEMLEDGER_SESSION_CACHE_TTL`): an idle conversation leaves
  Redis, PostgreSQL keeps it.
- `P:n` holds each conversation's head (the seq of its last message applied) without a TTL.
  It is what makes a refill safe: see projections/lua/recent_messages.lua and
  recent_refill.lua. A purge of the transcript (retention) drops both.
- The read model is batch + checkpoint atomic like the others (one script per batch) and
  rebuildable. Its TTL is the one thing not folded from the log: a list evicted in the live
  generation but present in a fresh rebuild shows in `digest()`'s "m" family (the heads,
  family "n", are exact). `replay verify` is therefore exact while no list has expired,
  and otherwise reports the evicted lists as differences of the "m" family.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ledger.connections import RedisClient
from ledger import events as ev
from ledger.events import RecordedEvent
from ledger.scripts import LuaScript
from ledger.settings import Settings

from .base import Arg, RedisProjection, call, pipelined
from .keys import ModelKeys, text

__all__ = ["CacheRead", "RecentMessagesCache", "RecentMessagesProjection", "conversation_key", "entry"]

PUSH_CHUNK = 1000  # entries per RPUSH (Lua's unpack has a stack limit)
FAMILIES = ("m", "n")
NAME = "recent_messages"


def conversation_key(org_id: str, agent_id: str, session_id: str) -> str:
    return f"{org_id}/{agent_id}/{session_id}"


def entry(seq: int, role: str, content: str, metadata: dict[str, Any], at: str, position: str) -> bytes:
    """A cached message: `<seq>|<json>`, the same JSON a PostgreSQL row renders to (keys sorted:
    JSONB does not keep the order metadata was sent in, and a refill must equal the fold)."""
    body = orjson.dumps({"seq": seq, "role": role, "content": content, "metadata": metadata, "at": at,
                         "position": position}, option=orjson.OPT_SORT_KEYS)
    return str(seq).encode() + b"|" + body


def _event_entry(r: RecordedEvent) -> bytes:
    e, d = r.event, r.event.data
    assert isinstance(d, ev.MessageAppended)
    return entry(e.subject_version, d.role, d.content, d.metadata, e.occurred_at.isoformat(),
                 r.position.stream_id)


class RecentMessagesProjection(RedisProjection):
    """Capped, expiring lists of each conversation's last messages (see the module docstring)."""

    name = NAME
    version = 1
    script = "recent_messages.lua"

    def __init__(self, client: RedisClient, namespace: str, partitions: int, label: str | None = None,
                 cap: int = 30, ttl_s: int = 7200):
        super().__init__(client, namespace, partitions, label)
        self.cap, self.ttl_ms = cap, ttl_s * 1000

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        return {"cap": settings.session_cache_messages, "ttl_s": settings.session_cache_ttl}

    def arguments(self, partition: int, events: Sequence[RecordedEvent]) -> list[Arg]:
        ops: list[tuple[str, str, list[Arg]]] = []
        last: dict[str, int] = {}  # conversation -> index of its open append operation
        for r in events:
            e = r.event
            conv = conversation_key(e.org_id, e.agent_id, e.subject_id)
            if isinstance(e.data, ev.SessionTranscriptPurged):
                last.pop(conv, None)
                ops.append(("D", conv, []))
            elif isinstance(e.data, ev.MessageAppended):
                at = last.get(conv)
                if at is None or len(ops[at][2]) > PUSH_CHUNK:
                    last[conv] = at = len(ops)
                    ops.append(("A", conv, [e.subject_version]))
                ops[at][2].append(_event_entry(r))
        args: list[Arg] = [self.cap, self.ttl_ms, len(ops)]
        for op, conv, values in ops:
            args += [op, conv, len(values), *values]
        return args

    def digest(self) -> dict[str, str]:
        """As every Redis model's, with both families always named (an empty model digests too)."""
        found = super().digest()
        empty = f"0:{hashlib.sha256().hexdigest()}"
        return {f: found.get(f, empty) for f in FAMILIES} | found


@dataclass(frozen=True)
class CacheRead:
    """What the cache answered: `entries` (decoded, oldest first) on a hit, None on a miss."""

    label: str
    entries: list[dict[str, Any]] | None


class RecentMessagesCache:
    """The reader side: read (refreshing the TTL), refill after a miss, statistics."""

    def __init__(self, client: RedisClient, namespace: str, partitions: int, cap: int, ttl_s: int):
        self.client, self.partitions, self.cap, self.ttl_ms = client, partitions, cap, ttl_s * 1000
        self.keys = ModelKeys(namespace, NAME)
        self._read = LuaScript(client, "recent_read.lua", package="projections")
        self._refill = LuaScript(client, "recent_refill.lua", package="projections")

    @classmethod
    def open(cls, client: RedisClient, settings: Settings) -> RecentMessagesCache:
        return cls(client, settings.namespace, settings.partitions, settings.session_cache_messages,
                   settings.session_cache_ttl)

    def _stats(self, partition: int) -> str:
        return f"{self.keys.tag(partition)}:rm:{NAME}:stats"

    def read(self, partition: int, conv: str, n: int) -> CacheRead:
        keys = [self.keys.pointer(partition), self._stats(partition)]
        args = [f"{self.keys.tag(partition)}:rm:{NAME}", f"v{RecentMessagesProjection.version}", conv, n,
                self.ttl_ms]
        reply = call(lambda: self._read.run(keys, args), "reading recent messages")
        label = text(reply[0])
        if text(reply[1]) != "hit":
            return CacheRead(label, None)
        return CacheRead(label, [orjson.loads(bytes(item).split(b"|", 1)[1]) for item in reply[2]])

    def applied(self, partition: int) -> str | None:
        """The live generation's checkpoint in `partition` (None: nothing applied yet)."""
        label = call(lambda: self.client.get(self.keys.pointer(partition)), "reading the pointer")
        if label is None:
            return None
        key = self.keys.checkpoint(partition, text(label))
        found = call(lambda: self.client.get(key), "reading the checkpoint")
        return None if found is None else text(found)

    def refill(self, partition: int, label: str, conv: str, head: int, entries: list[bytes]) -> str:
        """Warm the cache with PostgreSQL's last messages (see recent_refill.lua); its answer."""
        prefix = self.keys.prefix(partition, label)
        keys = [self.keys.pointer(partition), f"{prefix}:m:{conv}", f"{prefix}:n"]
        args: list[Arg] = [label, conv, head, self.ttl_ms, *entries[-self.cap:]]
        return text(call(lambda: self._refill.run(keys, args), "warming recent messages"))

    def stats(self) -> dict[str, Any]:
        """Hit rate, conversations cached and the memory their lists use, over every partition.
        Scans the live generations' lists: an operator's call, not one for every request."""
        counts = pipelined(self.client, lambda pipe: [pipe.hmget(self._stats(p), "hits", "misses")
                                                      for p in range(self.partitions)], "reading cache stats")
        hits, misses = sum(int(h or 0) for h, _ in counts), sum(int(m or 0) for _, m in counts)
        lists = self._lists()
        sizes = pipelined(self.client, lambda pipe: [pipe.memory_usage(k) for k in lists], "measuring")
        rate = round(hits / (hits + misses), 4) if hits + misses else None
        return {"hits": hits, "misses": misses, "hit_rate": rate, "sessions_cached": len(lists),
                "memory_bytes": sum(int(s or 0) for s in sizes)}

    def _lists(self) -> list[bytes]:
        pointers = [self.keys.pointer(p) for p in range(self.partitions)]
        labels = pipelined(self.client, lambda pipe: [pipe.get(k) for k in pointers], "reading pointers")
        found: list[bytes] = []
        for p, label in enumerate(labels):
            if label is not None:
                pattern = f"{self.keys.prefix(p, text(label))}:m:*"
                found += call(lambda: list(self.client.scan_iter(match=pattern, count=1000)), "listing")
        return found
