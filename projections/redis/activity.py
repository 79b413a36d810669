"""Each agent's recent activity (a capped feed) and live notifications per org.

Choices, and why:

- One list per agent, `P:f:<org>/<agent>`, newest first, trimmed to `length` entries
  (see projections/lua/activity.lua). An entry is `<m|s>:<subject>|<json>`: the subject
  (memory or session) in front lets the script find its entries without decoding JSON.
- Forgetting or expiry of a memory removes its entries (and adds none): a forgotten
  memory's content does not linger in the feed. The script applies a batch's pushes and
  removals in log order, per agent, exactly as one event at a time would, so the feed
  does not depend on how the log was cut into batches (a crash and a clean run agree).
- Notifications: the live projector PUBLISHes every applied event (forgotten ones
  included, without content) on `<ns>:activity:<org>` from inside the batch script, so
  an event is published exactly when its batch commits: a redelivered batch is fenced
  and publishes nothing. A rebuild (a labelled projection) publishes nothing. Around a
  swap of generations a few events may be published twice; pub/sub is fire-and-forget,
  so a watcher that is not connected misses events (the feed and the log keep them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from ledger.connections import RedisClient
from ledger import events as ev
from ledger.events import RecordedEvent
from ledger.partitions import partition_for
from ledger.settings import Settings

from .base import Arg, RedisProjection, call
from .keys import ModelKeys, text

PUSH_CHUNK = 1000  # entries per LPUSH (Lua's unpack has a stack limit)
CLIP = 100
ENDING = (ev.MemoryForgotten, ev.MemoryExpired)


def channel(namespace: str, org_id: str) -> str:
    """The pub/sub channel an org's events are published on."""
    return f"{namespace}:activity:{org_id}"


def _clip(value: str, width: int = CLIP) -> str:
    return value if len(value) <= width else value[:width - 1] + "…"


def summary(data: ev.Payload) -> str:
    """One line saying what an event did (no content of forgotten memories: they have none)."""
    match data:
        case ev.MemoryStored():
            tags = f" [{', '.join(data.tags)}]" if data.tags else ""
            return f"{data.memory_type}: {_clip(data.content)}{tags}"
        case ev.MemoryUpdated():
            changed = [f for f in ("content", "importance", "metadata", "expires_at") if getattr(data, f) is not None]
            text_ = f": {_clip(data.content)}" if data.content is not None else ""
            return "changed " + ", ".join(changed + (["expiry cleared"] if data.clear_expiry else [])) + text_
        case ev.MemoryTagged():
            return "+" + ", +".join(data.tags)
        case ev.MemoryUntagged():
            return "-" + ", -".join(data.tags)
        case ev.MemoryRecalled():
            who = f" by {data.user_id}" if data.user_id else ""
            return f"recalled{who}" + (f": {_clip(data.query)}" if data.query else "")
        case ev.SessionIngested():
            who = f" with {data.user_id}" if data.user_id else ""
            n = len(data.transcript)
            return f"session of {n} message{'' if n == 1 else 's'}{who}"
        case ev.SessionSummarized():
            return _clip(data.summary)
        case ev.SessionExtractionFailed():
            return f"extraction failed after {data.attempts} attempts: {_clip(data.error)}"
        case ev.SessionTranscriptPurged():
            return f"transcript purged ({data.retention_days}-day retention)"
        case ev.MessageAppended():
            return f"{data.role}: {_clip(data.content)}"
        case ev.SessionClosed():
            return f"conversation closed ({data.reason})"
        case ev.ConversationSummarized():
            return f"messages 1-{data.through}: {_clip(data.summary)}"
    return ""


#: Event types whose subject is a session (a conversation's too), not a memory.
SESSION_TYPES = frozenset({"MessageAppended", "ConversationSummarized"})


def mark(e: ev.Event) -> bytes:
    """What a feed entry starts with: its subject, with the kind (memory or session) in front."""
    session = e.type.startswith("Session") or e.type in SESSION_TYPES
    return f"{'s' if session else 'm'}:{e.subject_id}".encode()


def entry(r: RecordedEvent) -> bytes:
    """The JSON of one event as the feed and the notifications show it."""
    e = r.event
    ending = isinstance(e.data, ENDING)
    return orjson.dumps({"at": e.occurred_at, "type": e.type, "org": e.org_id, "agent": e.agent_id,
                         "subject": e.subject_id, "position": f"{r.position.partition}/{r.position.stream_id}",
                         "summary": "" if ending else summary(e.data)})


class ActivityProjection(RedisProjection):
    """Capped per-agent feeds plus notifications (see the module docstring; generations in `base`)."""

    name = "activity"
    version = 1
    script = "activity.lua"

    def __init__(self, client: RedisClient, namespace: str, partitions: int, label: str | None = None,
                 length: int = 100):
        super().__init__(client, namespace, partitions, label)
        self.length = length

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        return {"length": settings.feed_length}

    def arguments(self, partition: int, events: Sequence[RecordedEvent]) -> list[Arg]:
        ops: list[tuple[str, str, list[bytes]]] = []  # op, feed, arguments
        last: dict[str, int] = {}  # feed -> index of its latest operation
        notes: list[Arg] = []
        publish = self.live  # a rebuild publishes nothing: its notifications are not even sent
        for r in events:
            e, body = r.event, entry(r)
            feed = f"{e.org_id}/{e.agent_id}"
            if publish:
                notes += [channel(self.namespace, e.org_id), body]
            if isinstance(e.data, ENDING):
                last[feed] = len(ops)
                ops.append(("F", feed, [mark(e)]))
                continue
            at = last.get(feed)
            if at is None or ops[at][0] != "P" or len(ops[at][2]) >= PUSH_CHUNK:
                last[feed] = at = len(ops)
                ops.append(("P", feed, []))
            ops[at][2].append(mark(e) + b"|" + body)
        args: list[Arg] = [self.length, len(ops)]
        for op, feed, values in ops:
            args += [op, feed, len(values), *values]
        return args + notes


# -- the query side ------------------------------------------------------------------------


class ActivityFeed:
    """An agent's recent activity, newest first, from the live generation."""

    def __init__(self, client: RedisClient, namespace: str, partitions: int):
        self.client, self.namespace, self.partitions = client, namespace, partitions
        self.keys = ModelKeys(namespace, ActivityProjection.name)

    def recent(self, org_id: str, agent_id: str, limit: int = 20) -> list[dict[str, Any]]:
        p = partition_for(org_id, agent_id, self.partitions)
        label = call(lambda: self.client.get(self.keys.pointer(p)), "reading the activity pointer")
        generation = text(label) if label else f"v{ActivityProjection.version}"
        feed = f"{self.keys.prefix(p, generation)}:f:{org_id}/{agent_id}"
        items = call(lambda: self.client.lrange(feed, 0, limit - 1), "reading the feed")
        return [orjson.loads(_body(item)) for item in items]


def _body(item: bytes | str) -> bytes:
    raw = item if isinstance(item, bytes) else item.encode()
    return raw.split(b"|", 1)[1]


def watch(client: RedisClient, namespace: str, org_id: str, stop: threading.Event | None = None,
          poll_s: float = 0.5) -> Iterator[dict[str, Any]]:
    """The org's events as the live activity projector applies them, until `stop` is set."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
    call(lambda: pubsub.subscribe(channel(namespace, org_id)), "subscribing")
    try:
        while stop is None or not stop.is_set():
            message = call(lambda: pubsub.get_message(timeout=poll_s), "waiting for events")
            if message is not None and message["type"] == "message":
                yield orjson.loads(message["data"])
    finally:
        pubsub.close()
