"""`AsyncClient`: the HTTP API for asyncio code, the same methods as `Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ledger.errors import CommandError
from memledger.views import StatsReport

from .calls import (
    RECONNECT_FOR_S,
    STREAM_SILENCE_S,
    TIMEOUT_S,
    Call,
    Calls,
    ClientBase,
    query_params,
    response_body,
    session_body,
    unreachable,
)
from .results import (
    Analytics,
    HealthReport,
    HistoryEntry,
    LiveEvent,
    Memory,
    MemoryPage,
    MessageReceipt,
    RecentMessages,
    SessionReceipt,
    SessionView,
    SseParser,
    Trending,
    WriteReceipt,
    error_from_problem,
)

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(ClientBase):
    """The HTTP API for asyncio code: the same methods as `Client`, awaited."""

    def __init__(self, base_url: str, key: str | None = None, *, org: str | None = None, agent: str | None = None,
                 read_your_writes: bool = True, timeout: float = TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, key, org, agent, read_your_writes)
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout,
                                      transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run(self, call: Call[T]) -> T:
        try:
            content, headers = call.body()
            response = await self.http.request(call.method, call.path, params=self._params(call),
                                               content=content, headers=headers)
        except httpx.TransportError as e:
            raise unreachable(self.base_url, e) from e
        return self._finish(call, response)

    async def store(self, content: str, *, agent_id: str | None = None, memory_id: str | None = None,
                    memory_type: str = "note", tags: Sequence[str] = (), importance: float = 0.5,
                    metadata: Mapping[str, Any] | None = None, expires_at: datetime | None = None,
                    session_id: str | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return await self.run(Calls.store(content, agent_id, memory_id, memory_type, tags, importance, metadata,
                                          expires_at, session_id, idempotency_key))

    async def update(self, memory_id: str, *, content: str | None = None, importance: float | None = None,
                     metadata: Mapping[str, Any] | None = None, expires_at: datetime | None = None,
                     clear_expiry: bool = False, agent_id: str | None = None, expected_version: int | None = None,
                     idempotency_key: str | None = None) -> WriteReceipt:
        changes = {"content": content, "importance": importance, "metadata": metadata, "expires_at": expires_at,
                   "clear_expiry": clear_expiry or None}
        return await self.run(Calls.update(memory_id, changes, agent_id, expected_version, idempotency_key))

    async def tag(self, memory_id: str, tags: Sequence[str], *, agent_id: str | None = None,
                  expected_version: int | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return await self.run(Calls.tag(memory_id, tags, agent_id, expected_version, idempotency_key))

    async def untag(self, memory_id: str, tag: str, *, agent_id: str | None = None,
                    expected_version: int | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return await self.run(Calls.untag(memory_id, tag, agent_id, expected_version, idempotency_key))

    async def forget(self, memory_id: str, *, reason: str | None = None, agent_id: str | None = None,
                     expected_version: int | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return await self.run(Calls.forget(memory_id, reason, agent_id, expected_version, idempotency_key))

    async def record_recall(self, memory_id: str, *, user_id: str | None = None, query: str | None = None,
                            agent_id: str | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return await self.run(Calls.record_recall(memory_id, user_id, query, agent_id, idempotency_key))

    async def send_many(self, commands: Sequence[Mapping[str, Any]]) -> list[WriteReceipt | CommandError]:
        return await self.run(Calls.send_many(commands))

    async def ingest_session(self, messages: Sequence[Mapping[str, Any]] | None = None, *,
                             session_data: str | None = None, session_id: str | None = None,
                             agent_id: str | None = None, user_id: str | None = None,
                             metadata: Mapping[str, Any] | None = None,
                             idempotency_key: str | None = None) -> SessionReceipt:
        body = session_body(messages, session_data, session_id, agent_id, user_id, metadata)
        return await self.run(Calls.ingest_session(body, idempotency_key))

    async def append_message(self, session_id: str, role: str, content: str, *,
                       metadata: Mapping[str, Any] | None = None, agent_id: str | None = None,
                       idempotency_key: str | None = None) -> MessageReceipt:
        """One message of a conversation, as it happens; the first one creates it."""
        body = {"role": role, "content": content, "metadata": dict(metadata) if metadata else None,
                "agent_id": agent_id}
        return await self.run(Calls.append_message(session_id, body, idempotency_key))

    async def close_session(self, session_id: str, *, agent_id: str | None = None,
                      idempotency_key: str | None = None) -> MessageReceipt:
        return await self.run(Calls.close_session(session_id, agent_id, idempotency_key))

    async def recent_messages(self, session_id: str, last: int = 10, *, summary: bool = False,
                        agent_id: str | None = None) -> RecentMessages:
        """The last `last` messages, oldest first (after this client's last write, when it made one)."""
        return await self.run(Calls.recent_messages(session_id, last, summary, agent_id))

    async def query(self, **filters: Any) -> MemoryPage:
        return await self.run(Calls.query(query_params(**filters)))

    async def get(self, memory_id: str, *, agent_id: str | None = None, as_of: datetime | None = None) -> Memory:
        return await self.run(Calls.get(memory_id, agent_id, as_of))

    async def history(self, memory_id: str, *, agent_id: str | None = None) -> list[HistoryEntry]:
        return await self.run(Calls.history(memory_id, agent_id))

    async def session(self, session_id: str, *, agent_id: str | None = None) -> SessionView:
        return await self.run(Calls.session(session_id, agent_id))

    async def hierarchy(self, *, agent_id: str | None = None, session_id: str | None = None,
                        levels: Sequence[str] = (), since: datetime | None = None, until: datetime | None = None,
                        limit: int = 100) -> list[dict[str, Any]]:
        return await self.run(Calls.hierarchy({"agent_id": agent_id, "session_id": session_id,
                                               "level": list(levels) or None, "since": since, "until": until,
                                               "limit": limit}))

    async def stats(self) -> list[dict[str, Any]]:
        return await self.run(Calls.stats())

    async def stats_report(self, top_tags: int = 100) -> StatsReport:
        return await self.run(Calls.stats_report(top_tags))

    async def trending(self, *, hours: int = 24, top: int = 10, until: datetime | None = None) -> Trending:
        return await self.run(Calls.trending(hours, top, until))

    async def analytics(self, *, since: date | None = None, until: date | None = None) -> Analytics:
        return await self.run(Calls.analytics(since, until))

    async def feed(self, agent_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        return await self.run(Calls.feed(agent_id, limit))

    async def health(self) -> HealthReport:
        return await self.run(Calls.health())

    async def events(self, *, agent_id: str | None = None, types: Sequence[str] = (), since: str | None = None,
                     reconnect_for: float = RECONNECT_FOR_S) -> AsyncIterator[LiveEvent]:
        """As `Client.events`, asynchronously."""
        cursor, parser, failed_since = since, SseParser(), None
        timeout = httpx.Timeout(TIMEOUT_S, read=STREAM_SILENCE_S)
        while True:
            try:
                async with self.http.stream("GET", "/v1/events", timeout=timeout,
                                            **self._events_request(agent_id, types, cursor)) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_from_problem(response.status_code, response_body(response), write=False)
                    failed_since = None
                    async for line in response.aiter_lines():
                        for event in parser.feed(line):
                            cursor = event.id
                            yield event
            except httpx.TransportError as e:
                failed_since = failed_since or time.monotonic()
                if time.monotonic() - failed_since > reconnect_for:
                    raise unreachable(self.base_url, e) from e
            parser = SseParser(retry_ms=parser.retry_ms)
            await asyncio.sleep((parser.retry_ms or 1000) / 1000)
