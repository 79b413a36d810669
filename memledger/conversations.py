"""Working memory on the read side: a conversation's recent messages, from the Redis cache
when it holds them, else from PostgreSQL (which then warms the cache).

Every answer says where it came from (`source`: "cache" or "database"). When Redis cannot
be reached the answer comes from PostgreSQL and says so (`cache_error`); it never fails
while PostgreSQL is up. The App (memledger/app.py) scopes the org and agent and delegates
here; this module opens no connection and holds no SQL (the read models do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from typing import TYPE_CHECKING, Any, Literal

from ledger.errors import InvalidQuery, SessionNotFound, StoreUnavailable
from ledger.events import stream_id_key
from ledger.partitions import partition_for
from ledger.settings import Settings

if TYPE_CHECKING:
    from ledger.postgres import Connection
    from projections.postgres.conversations import ConversationRow, MessageRow
    from projections.redis.recent_messages import RecentMessagesCache

__all__ = ["MAX_LAST", "Conversations", "RecentMessages"]

#: The most messages one read returns.
MAX_LAST = 10_000
Source = Literal["cache", "database"]


@dataclass(frozen=True)
class RecentMessages:
    """The last messages of one conversation, oldest first, and where they were read from."""

    org_id: str
    agent_id: str
    session_id: str
    messages: list[dict[str, Any]]
    source: Source
    summary: str | None = None  # with_summary: the older part's summary (messages 1..summary_through)
    summary_through: int | None = None
    status: str | None = None  # read with the conversation's row (database, or with_summary)
    cache_error: str | None = None  # why the cache was not used (Redis unreachable)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"org_id": self.org_id, "agent_id": self.agent_id,
                               "session_id": self.session_id, "source": self.source,
                               "messages": self.messages, "status": self.status}
        if self.summary is not None or self.summary_through is not None:
            out |= {"summary": self.summary, "summary_through": self.summary_through}
        if self.cache_error is not None:
            out["cache_error"] = self.cache_error
        return out


def render(row: MessageRow) -> dict[str, Any]:
    """A PostgreSQL message as the cache holds it (the same JSON either way)."""
    return {"seq": row.seq, "role": row.role, "content": row.content, "metadata": row.metadata,
            "at": row.at.astimezone(timezone.utc).isoformat(), "position": row.stream_id}


class Conversations:
    """Recent messages of conversations, through the cache (see the module docstring).

    Parameters:
        settings: partitions and the cache's size and TTL.
        conn: the PostgreSQL connection of the read models (called on each use).
        client: the Redis client of the read models (called on first use of the cache).
    """

    def __init__(self, settings: Settings, conn: Callable[[], Connection], client: Callable[[], Any]):
        self.settings, self._conn, self._client = settings, conn, client
        self._reader: RecentMessagesCache | None = None
        self._agents: dict[tuple[str, str], str] = {}  # (org, session) -> its agent: a session never moves

    def recent(self, org_id: str, session_id: str, n: int, agent_id: str | None = None,
               with_summary: bool = False, after: tuple[int, str] | None = None) -> RecentMessages:
        """`after`: a write (partition, stream id) the answer must include (read your writes): in
        the conversation's partition, the cache answers only once its projector has applied it,
        else PostgreSQL does (the caller waits for PostgreSQL first)."""
        if not 1 <= n <= MAX_LAST:
            raise InvalidQuery(f"last must be between 1 and {MAX_LAST}, not {n}")
        agent = agent_id or self._agent_of(org_id, session_id)
        conv = f"{org_id}/{agent}/{session_id}"
        partition = partition_for(org_id, agent, self.settings.partitions)
        try:
            if after is not None and after[0] == partition and not _reached(self._cache().applied(partition),
                                                                            after[1]):
                return self._from_database(org_id, agent, session_id, n, None, None)
            found = self._cache().read(partition, conv, n)
        except StoreUnavailable as e:
            return self._from_database(org_id, agent, session_id, n, None, str(e))
        if found.entries is None:
            return self._from_database(org_id, agent, session_id, n, (partition, found.label), None)
        answer = RecentMessages(org_id, agent, session_id, found.entries, "cache")
        return self._with_summary(answer) if with_summary else answer

    def _cache(self) -> RecentMessagesCache:
        if self._reader is None:
            from projections.redis.recent_messages import RecentMessagesCache

            self._reader = RecentMessagesCache.open(self._client(), self.settings)
        return self._reader

    def _agent_of(self, org_id: str, session_id: str) -> str:
        key = (org_id, session_id)
        if key not in self._agents:
            from projections.postgres.conversations import conversation

            row = conversation(self._conn(), org_id, session_id, None)
            if row is None:
                raise _missing(org_id, session_id)
            self._agents[key] = row.agent_id
        return self._agents[key]

    def _row(self, org_id: str, agent_id: str, session_id: str) -> ConversationRow:
        from projections.postgres.conversations import conversation

        row = conversation(self._conn(), org_id, session_id, agent_id)
        if row is None:
            raise _missing(org_id, session_id)
        return row

    def _from_database(self, org_id: str, agent_id: str, session_id: str, n: int,
                       warm: tuple[int, str] | None, cache_error: str | None) -> RecentMessages:
        from projections.postgres.conversations import last_messages

        row = self._row(org_id, agent_id, session_id)
        keep = max(n, self.settings.session_cache_messages)  # enough to warm the whole cached list
        rows = last_messages(self._conn(), org_id, agent_id, session_id, keep)
        messages = [render(r) for r in rows]
        if warm is not None and rows:
            self._warm(warm, f"{org_id}/{agent_id}/{session_id}", rows)
        return RecentMessages(org_id, agent_id, session_id, messages[-n:], "database", row.digest,
                              row.digest_through, row.status, cache_error)

    def _warm(self, where: tuple[int, str], conv: str, rows: list[MessageRow]) -> None:
        from projections.redis.recent_messages import entry

        entries = [entry(r.seq, r.role, r.content, r.metadata, m["at"], r.stream_id)
                   for r, m in zip(rows, map(render, rows))]
        try:
            self._cache().refill(where[0], where[1], conv, rows[-1].seq, entries)
        except StoreUnavailable:
            pass  # the answer is PostgreSQL's either way; the next read tries again

    def _with_summary(self, answer: RecentMessages) -> RecentMessages:
        row = self._row(answer.org_id, answer.agent_id, answer.session_id)
        return RecentMessages(answer.org_id, answer.agent_id, answer.session_id, answer.messages,
                              answer.source, row.digest, row.digest_through, row.status)

    def cache_stats(self) -> dict[str, Any]:
        """Hit rate, sessions cached, memory used; {"error": ...} when Redis is unreachable."""
        try:
            return self._cache().stats()
        except StoreUnavailable as e:
            return {"error": str(e)}


def _reached(checkpoint: str | None, position: str) -> bool:
    return checkpoint is not None and stream_id_key(checkpoint) >= stream_id_key(position)


def _missing(org_id: str, session_id: str) -> SessionNotFound:
    return SessionNotFound(f"no conversation {session_id!r} in org {org_id!r} (or its messages were not "
                           "projected yet: wait for the receipt)")
