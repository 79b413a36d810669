"""The conversations read model (working memory): every message of every conversation, in
`session_messages`, and one row per conversation, in `conversations`.

A message's `seq` is its subject version: the write side bumps a conversation's version
once per message and nothing else bumps it while it is open (the partial summary is a
`touch`), so `seq` numbers the messages 1, 2, 3... in the order they were appended, also
with concurrent writers (one partition, one append script at a time).

A batch writes its messages first (one statement), then one upsert per conversation it
touched, then the lifecycle events in log order. That is the order they happened in: the
write side refuses a message after a close, and a purge comes after the close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row, tuple_row

from ledger import events as ev
from ledger.errors import InvalidQuery
from ledger.events import RecordedEvent
from ledger.postgres import translated

from .base import PostgresProjection

__all__ = ["ConversationRow", "ConversationsProjection", "MessageRow", "closable", "conversation",
           "last_messages", "messages_through", "purgeable"]

_MESSAGE = """
INSERT INTO session_messages (org_id, agent_id, session_id, seq, role, content, metadata, at, event_id,
                              partition, stream_id)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)
"""
_SEEN = """
INSERT INTO conversations (org_id, agent_id, session_id, status, message_count, started_at, last_message_at,
                           memory_ids, version)
VALUES (%s, %s, %s, 'open', %s, %s, %s, '{}', %s)
ON CONFLICT (org_id, agent_id, session_id) DO UPDATE SET message_count = EXCLUDED.message_count,
    last_message_at = EXCLUDED.last_message_at, version = EXCLUDED.version
"""
_WHERE = " WHERE org_id = %s AND agent_id = %s AND session_id = %s"
#: Lifecycle event -> (SET clause, its parameters from (event, payload)).
_UPDATES: dict[type[ev.Payload], tuple[str, Any]] = {
    ev.SessionClosed: ("status = 'closed', closed_at = %s, close_reason = %s, version = %s",
                       lambda e, d: (e.occurred_at, d.reason, e.subject_version)),
    ev.ConversationSummarized: ("digest = %s, digest_through = %s", lambda e, d: (d.summary, d.through)),
    ev.SessionSummarized: ("status = 'summarized', summary = %s, memory_ids = %s, error = NULL, version = %s",
                           lambda e, d: (d.summary, list(d.memory_ids), e.subject_version)),
    ev.SessionExtractionFailed: ("status = 'failed', error = %s, version = %s",
                                 lambda e, d: (d.error, e.subject_version)),
    ev.SessionRetryRequested: ("status = 'closed', version = %s", lambda e, d: (e.subject_version,)),
    ev.SessionTranscriptPurged: ("transcript_purged_at = %s, version = %s",
                                 lambda e, d: (e.occurred_at, e.subject_version)),
}


class ConversationsProjection(PostgresProjection):
    name = "conversations"
    version = 1
    tables = ("session_messages", "conversations")

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:
        messages = [r for r in events if isinstance(r.event.data, ev.MessageAppended)]
        if messages:
            cur.executemany(_MESSAGE, [_message_row(r) for r in messages])
            cur.executemany(_SEEN, list(_latest(messages).values()))
        for r in events:
            update = _UPDATES.get(type(r.event.data))
            if update is not None:
                self._lifecycle(cur, r.event, update)

    @staticmethod
    def _lifecycle(cur: psycopg.Cursor, e: ev.Event, update: tuple[str, Any]) -> None:
        where = (e.org_id, e.agent_id, e.subject_id)
        # An ingested session's events match no conversation row: they change nothing here.
        cur.execute(f"UPDATE conversations SET {update[0]}{_WHERE}", (*update[1](e, e.data), *where))
        if isinstance(e.data, ev.SessionTranscriptPurged):
            cur.execute(f"DELETE FROM session_messages{_WHERE}", where)


def _message_row(r: RecordedEvent) -> tuple[Any, ...]:
    e, d = r.event, r.event.data
    assert isinstance(d, ev.MessageAppended)
    return (e.org_id, e.agent_id, e.subject_id, e.subject_version, d.role, d.content,
            orjson.dumps(d.metadata).decode(), e.occurred_at, e.event_id, r.position.partition,
            r.position.stream_id)


def _latest(messages: list[RecordedEvent]) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    """Per conversation, the upsert its batch's messages come to (first seen, last seen, count)."""
    out: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for r in messages:
        e = r.event
        key = (e.org_id, e.agent_id, e.subject_id)
        started = out[key][4] if key in out else e.occurred_at
        out[key] = (*key, e.subject_version, started, e.occurred_at, e.subject_version)
    return out


# -- the query side ------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageRow:
    seq: int
    role: str
    content: str
    metadata: dict[str, Any]
    at: datetime
    stream_id: str

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "role": self.role, "content": self.content, "metadata": self.metadata,
                "at": self.at.isoformat(), "position": self.stream_id}


@dataclass(frozen=True)
class ConversationRow:
    org_id: str
    agent_id: str
    session_id: str
    status: str
    message_count: int
    started_at: datetime
    last_message_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    digest: str | None
    digest_through: int | None
    summary: str | None
    memory_ids: list[str]
    error: str | None
    transcript_purged_at: datetime | None
    version: int


_MESSAGE_COLUMNS = "seq, role, content, metadata, at, stream_id"


def conversation(conn: psycopg.Connection, org_id: str, session_id: str,
                 agent_id: str | None) -> ConversationRow | None:
    """The conversation `session_id` of `org_id` (of `agent_id` when given); None: no such one.
    Session ids are unique per org and agent: two agents' sessions of one id need the agent."""
    where, params = ("org_id = %s AND session_id = %s", [org_id, session_id])
    if agent_id is not None:
        where, params = where + " AND agent_id = %s", params + [agent_id]
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT * FROM conversations WHERE {where} LIMIT 2", params).fetchall()
    if len(rows) > 1:
        raise InvalidQuery(f"session {session_id!r} exists for several agents of org {org_id!r}: "
                           "name the agent")
    return ConversationRow(**rows[0]) if rows else None


def last_messages(conn: psycopg.Connection, org_id: str, agent_id: str, session_id: str,
                  n: int) -> list[MessageRow]:
    """The last `n` messages of a conversation, oldest first."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM session_messages{_WHERE} ORDER BY seq DESC LIMIT %s"
        rows = cur.execute(sql, (org_id, agent_id, session_id, n)).fetchall()
    return [MessageRow(**r) for r in reversed(rows)]


def messages_through(conn: psycopg.Connection, org_id: str, agent_id: str, session_id: str,
                     through: int) -> list[MessageRow]:
    """Messages 1..`through` of a conversation, oldest first (what extraction reads)."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM session_messages{_WHERE} AND seq <= %s ORDER BY seq"
        rows = cur.execute(sql, (org_id, agent_id, session_id, through)).fetchall()
    return [MessageRow(**r) for r in rows]


def closable(conn: psycopg.Connection, idle_before: datetime | None, max_messages: int | None,
             org_id: str | None, limit: int = 500) -> list[tuple[str, str, str, int, str]]:
    """Open conversations idle since before `idle_before` or at `max_messages` or more:
    (org, agent, session, message count, reason)."""
    params: list[Any]
    where, params = "status = 'open'", []
    if org_id is not None:
        where, params = where + " AND org_id = %s", [org_id]
    due = f"CASE WHEN %s::int IS NOT NULL AND message_count >= %s::int THEN 'max_messages' " \
          f"WHEN %s::timestamptz IS NOT NULL AND last_message_at < %s::timestamptz THEN 'idle' END"
    sql = (f"SELECT * FROM (SELECT org_id, agent_id, session_id, message_count, {due} AS reason"
           f" FROM conversations WHERE {where}) c WHERE reason IS NOT NULL"
           " ORDER BY org_id, agent_id, session_id LIMIT %s")
    with translated(), conn.cursor(row_factory=tuple_row) as cur:
        args = (max_messages, max_messages, idle_before, idle_before, *params, limit)
        rows = cur.execute(sql, args).fetchall()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def purgeable(conn: psycopg.Connection, closed_before: datetime, org_id: str | None,
              limit: int = 500) -> list[tuple[str, str, str]]:
    """Closed conversations (closed before `closed_before`) whose messages were not purged yet."""
    params: list[Any]
    where, params = "closed_at < %s AND transcript_purged_at IS NULL", [closed_before]
    if org_id is not None:
        where, params = where + " AND org_id = %s", params + [org_id]
    with translated(), conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(f"SELECT org_id, agent_id, session_id FROM conversations WHERE {where}"
                           " ORDER BY closed_at LIMIT %s", (*params, limit)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]
