"""The Python client of the HTTP API: `Client` (sync) and `AsyncClient`, over httpx.

    from memledger.client import Client

    with Client("http://127.0.0.1:8080", "mlk_key_..._...") as ml:
        receipt = ml.store("Dana prefers morning meetings", agent_id="support-bot", tags=["scheduling"])
        page = ml.query(tags=["scheduling"])        # waits until the store above is readable

Both mirror what an agent does with `memledger.app.App`: the same operations, typed results
(memledger/client_results.py) and the same errors (ledger/errors.py), decoded from the server's
problem documents: `except VersionConflict as e: e.current_version` works alike in-process and
over HTTP. A server that cannot be reached is `StoreUnavailable`, as Redis down is in-process.

Read-your-writes: a client remembers its last write's consistency token and sends it as
`consistent_with` on its next reads, so they wait (bounded, server side) until that write is
readable. `read_your_writes=False` turns that off; a read's own `consistent_with` wins.

Live events: `events()` iterates GET /v1/events and, when the connection drops, reconnects
with the last event's id (`Last-Event-ID`): nothing is lost or repeated across reconnections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from ledger.errors import CommandError, StoreUnavailable

from .client_results import (
    Analytics,
    HealthReport,
    HistoryEntry,
    LiveEvent,
    Memory,
    MemoryPage,
    SessionReceipt,
    SessionView,
    SseParser,
    Trending,
    WriteReceipt,
    error_from_problem,
    outcome_of,
)
from .views import StatsReport

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")
Params = dict[str, Any]
#: Seconds a request may take (a read waiting on `consistent_with` waits up to 5 s server side).
TIMEOUT_S = 30.0
#: Seconds an event stream may stay silent before it counts as dropped (the server pings every 15 s).
STREAM_SILENCE_S = 60.0
#: Seconds `events()` keeps trying to reconnect before it gives up with `StoreUnavailable`.
RECONNECT_FOR_S = 30.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how its answer becomes a result."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    params: Params = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    read: bool = False  # a read: it carries the client's consistency token


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop unset values; dates and times as ISO 8601."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = value.isoformat() if isinstance(value, (date, datetime)) else value
    return out


def _write_headers(idempotency_key: str | None, expected_version: int | None = None) -> dict[str, str]:
    return _clean({"Idempotency-Key": idempotency_key,
                   "If-Match": None if expected_version is None else f'"{expected_version}"'})


def _receipt(response: httpx.Response) -> WriteReceipt:
    body = response.json()
    return WriteReceipt.model_validate({**body, "subject_id": body.get("memory_id")})


def _json(response: httpx.Response) -> Any:
    return response.json()


class Calls:
    """Every operation as a `Call`: what both clients send (they differ only in how they wait)."""

    @staticmethod
    def store(content: str, agent_id: str | None, memory_id: str | None, memory_type: str, tags: Sequence[str],
              importance: float, metadata: Mapping[str, Any] | None, expires_at: datetime | None,
              session_id: str | None, idempotency_key: str | None) -> Call[WriteReceipt]:
        body = _clean({"content": content, "agent_id": agent_id, "memory_id": memory_id, "memory_type": memory_type,
                       "tags": list(tags), "importance": importance, "metadata": dict(metadata or {}),
                       "expires_at": expires_at, "session_id": session_id})
        return Call("POST", "/v1/memories", _receipt, json=body, headers=_write_headers(idempotency_key))

    @staticmethod
    def update(memory_id: str, changes: Mapping[str, Any], agent_id: str | None, expected_version: int | None,
               idempotency_key: str | None) -> Call[WriteReceipt]:
        body = _clean({**changes, "agent_id": agent_id})
        return Call("PATCH", f"/v1/memories/{memory_id}", _receipt, json=body,
                    headers=_write_headers(idempotency_key, expected_version))

    @staticmethod
    def tag(memory_id: str, tags: Sequence[str], agent_id: str | None, expected_version: int | None,
            idempotency_key: str | None) -> Call[WriteReceipt]:
        return Call("POST", f"/v1/memories/{memory_id}/tags", _receipt,
                    json=_clean({"tags": list(tags), "agent_id": agent_id}),
                    headers=_write_headers(idempotency_key, expected_version))

    @staticmethod
    def untag(memory_id: str, tag: str, agent_id: str | None, expected_version: int | None,
              idempotency_key: str | None) -> Call[WriteReceipt]:
        return Call("DELETE", f"/v1/memories/{memory_id}/tags/{tag}", _receipt, params=_clean({"agent_id": agent_id}),
                    headers=_write_headers(idempotency_key, expected_version))

    @staticmethod
    def forget(memory_id: str, reason: str | None, agent_id: str | None, expected_version: int | None,
               idempotency_key: str | None) -> Call[WriteReceipt]:
        return Call("DELETE", f"/v1/memories/{memory_id}", _receipt,
                    params=_clean({"agent_id": agent_id, "reason": reason}),
                    headers=_write_headers(idempotency_key, expected_version))

    @staticmethod
    def record_recall(memory_id: str, user_id: str | None, query: str | None, agent_id: str | None,
                      idempotency_key: str | None) -> Call[WriteReceipt]:
        return Call("POST", f"/v1/memories/{memory_id}/recalls", _receipt,
                    json=_clean({"user_id": user_id, "query": query, "agent_id": agent_id}),
                    headers=_write_headers(idempotency_key))

    @staticmethod
    def send_many(commands: Sequence[Mapping[str, Any]]) -> Call[list[WriteReceipt | CommandError]]:
        def decode(response: httpx.Response) -> list[WriteReceipt | CommandError]:
            return [outcome_of(item) for item in response.json()]

        return Call("POST", "/v1/commands", decode, json=[dict(c) for c in commands])

    @staticmethod
    def ingest_session(body: Mapping[str, Any], idempotency_key: str | None) -> Call[SessionReceipt]:
        return Call("POST", "/v1/sessions", lambda r: SessionReceipt.model_validate(r.json()), json=_clean(body),
                    headers=_write_headers(idempotency_key))

    @staticmethod
    def query(params: Mapping[str, Any]) -> Call[MemoryPage]:
        return Call("GET", "/v1/memories", lambda r: MemoryPage.model_validate(r.json()), params=_clean(params),
                    read=True)

    @staticmethod
    def get(memory_id: str, agent_id: str | None, as_of: datetime | None) -> Call[Memory]:
        return Call("GET", f"/v1/memories/{memory_id}", lambda r: Memory.model_validate(r.json()),
                    params=_clean({"agent_id": agent_id, "as_of": as_of}), read=True)

    @staticmethod
    def history(memory_id: str, agent_id: str | None) -> Call[list[HistoryEntry]]:
        return Call("GET", f"/v1/memories/{memory_id}/history",
                    lambda r: [HistoryEntry.model_validate(e) for e in r.json()["events"]],
                    params=_clean({"agent_id": agent_id}), read=True)

    @staticmethod
    def session(session_id: str, agent_id: str | None) -> Call[SessionView]:
        return Call("GET", f"/v1/sessions/{session_id}", lambda r: SessionView.model_validate(r.json()),
                    params=_clean({"agent_id": agent_id}), read=True)

    @staticmethod
    def hierarchy(params: Mapping[str, Any]) -> Call[list[dict[str, Any]]]:
        return Call("GET", "/v1/hierarchy", lambda r: list(r.json()["rows"]), params=_clean(params), read=True)

    @staticmethod
    def stats() -> Call[list[dict[str, Any]]]:
        return Call("GET", "/v1/stats", lambda r: list(r.json()["agents"]), read=True)

    @staticmethod
    def stats_report(top_tags: int) -> Call[StatsReport]:
        return Call("GET", "/v1/stats", lambda r: StatsReport(**r.json()), params={"top_tags": top_tags}, read=True)

    @staticmethod
    def trending(hours: int, top: int, until: datetime | None) -> Call[Trending]:
        return Call("GET", "/v1/trending", lambda r: Trending.model_validate(r.json()),
                    params=_clean({"hours": hours, "top": top, "until": until}), read=True)

    @staticmethod
    def analytics(since: date | None, until: date | None) -> Call[Analytics]:
        return Call("GET", "/v1/analytics", lambda r: Analytics.from_body(r.json()),
                    params=_clean({"since": since, "until": until}), read=True)

    @staticmethod
    def feed(agent_id: str, limit: int) -> Call[list[dict[str, Any]]]:
        return Call("GET", f"/v1/agents/{agent_id}/feed", lambda r: list(r.json()["items"]),
                    params={"limit": limit}, read=True)

    @staticmethod
    def health() -> Call[HealthReport]:
        return Call("GET", "/v1/health", lambda r: HealthReport.model_validate(r.json()))


def query_params(agent_id: str | None = None, tags: Sequence[str] = (), match: str = "any",
                 min_importance: float | None = None, since: datetime | None = None, until: datetime | None = None,
                 text: str | None = None, memory_type: str | None = None, session_id: str | None = None,
                 order: str = "recent", limit: int = 20, cursor: str | None = None,
                 as_of: datetime | None = None) -> Params:
    """GET /v1/memories's parameters, named as `App.query`'s MemoryQuery fields."""
    return {"agent_id": agent_id, "tag": list(tags) or None, "match": match, "min_importance": min_importance,
            "since": since, "until": until, "text": text, "memory_type": memory_type, "session_id": session_id,
            "order": order, "limit": limit, "cursor": cursor, "as_of": as_of}


def session_body(messages: Sequence[Mapping[str, Any]] | None, session_data: str | None, session_id: str | None,
                 agent_id: str | None, user_id: str | None, metadata: Mapping[str, Any] | None) -> Params:
    return {"messages": [dict(m) for m in messages] if messages is not None else None, "session_data": session_data,
            "session_id": session_id, "agent_id": agent_id, "user_id": user_id,
            "metadata": dict(metadata) if metadata else None}


class _Base:
    """What both clients share: authentication headers, the consistency token, decoding answers."""

    def __init__(self, base_url: str, key: str | None, org: str | None, agent: str | None,
                 read_your_writes: bool) -> None:
        if key is None and org is None:
            raise ValueError("give an API key (or, for a server run with --insecure-no-auth, an org)")
        self.base_url = base_url.rstrip("/")
        self.read_your_writes = read_your_writes
        self.token: str | None = None  # the last write's consistency token
        headers = {"Authorization": f"Bearer {key}"} if key else _clean({"X-Org": org, "X-Agent": agent})
        self.headers = {"Accept": "application/json", **headers}

    def _params(self, call: Call[Any]) -> Params:
        params = dict(call.params)
        if call.read and self.read_your_writes and self.token and "consistent_with" not in params:
            params["consistent_with"] = self.token
        return params

    def _finish(self, call: Call[T], response: httpx.Response) -> T:
        if response.status_code >= 400 and not (call.path == "/v1/health" and response.status_code == 503):
            raise error_from_problem(response.status_code, _body(response), write=call.method != "GET")
        result = call.decode(response)
        self._remember(call, response, result)
        return result

    def _remember(self, call: Call[Any], response: httpx.Response, result: Any) -> None:
        if call.method == "GET":
            return
        token = response.headers.get("X-Consistency-Token")
        if token is None and isinstance(result, list):  # a batch: its last command that was appended
            tokens = [r.token for r in result if isinstance(r, WriteReceipt)]
            token = tokens[-1] if tokens else None
        self.token = token or self.token

    def _events_request(self, agent_id: str | None, types: Sequence[str], cursor: str | None) -> dict[str, Any]:
        headers = {**self.headers, "Accept": "text/event-stream"}
        if cursor is not None:
            headers["Last-Event-ID"] = cursor
        return {"params": _clean({"agent": agent_id, "type": list(types) or None}), "headers": headers}


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:500]}


def _unreachable(base_url: str, error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the memory-ledger API at {base_url} is unreachable ({type(error).__name__}: {error})")


class Client(_Base):
    """The HTTP API, synchronously.

    Parameters:
        base_url: e.g. "http://127.0.0.1:8080".
        key: an API key secret (`memledger keys create`).
        org, agent: instead of a key, for a server run with `--insecure-no-auth` only.
        read_your_writes: send the last write's token with every read (see the module doc).
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, key: str | None = None, *, org: str | None = None, agent: str | None = None,
                 read_your_writes: bool = True, timeout: float = TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, key, org, agent, read_your_writes)
        self.http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def run(self, call: Call[T]) -> T:
        """Send one `Call` and decode its answer (raises the ledger error a problem names)."""
        try:
            response = self.http.request(call.method, call.path, params=self._params(call), json=call.json,
                                         headers=call.headers)
        except httpx.TransportError as e:
            raise _unreachable(self.base_url, e) from e
        return self._finish(call, response)

    # -- writes (each remembers its consistency token) -------------------------------------------

    def store(self, content: str, *, agent_id: str | None = None, memory_id: str | None = None,
              memory_type: str = "note", tags: Sequence[str] = (), importance: float = 0.5,
              metadata: Mapping[str, Any] | None = None, expires_at: datetime | None = None,
              session_id: str | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return self.run(Calls.store(content, agent_id, memory_id, memory_type, tags, importance, metadata,
                                    expires_at, session_id, idempotency_key))

    def update(self, memory_id: str, *, content: str | None = None, importance: float | None = None,
               metadata: Mapping[str, Any] | None = None, expires_at: datetime | None = None,
               clear_expiry: bool = False, agent_id: str | None = None, expected_version: int | None = None,
               idempotency_key: str | None = None) -> WriteReceipt:
        changes = {"content": content, "importance": importance, "metadata": metadata, "expires_at": expires_at,
                   "clear_expiry": clear_expiry or None}
        return self.run(Calls.update(memory_id, changes, agent_id, expected_version, idempotency_key))

    def tag(self, memory_id: str, tags: Sequence[str], *, agent_id: str | None = None,
            expected_version: int | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return self.run(Calls.tag(memory_id, tags, agent_id, expected_version, idempotency_key))

    def untag(self, memory_id: str, tag: str, *, agent_id: str | None = None, expected_version: int | None = None,
              idempotency_key: str | None = None) -> WriteReceipt:
        return self.run(Calls.untag(memory_id, tag, agent_id, expected_version, idempotency_key))

    def forget(self, memory_id: str, *, reason: str | None = None, agent_id: str | None = None,
               expected_version: int | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return self.run(Calls.forget(memory_id, reason, agent_id, expected_version, idempotency_key))

    def record_recall(self, memory_id: str, *, user_id: str | None = None, query: str | None = None,
                      agent_id: str | None = None, idempotency_key: str | None = None) -> WriteReceipt:
        return self.run(Calls.record_recall(memory_id, user_id, query, agent_id, idempotency_key))

    def send_many(self, commands: Sequence[Mapping[str, Any]]) -> list[WriteReceipt | CommandError]:
        """Commands (JSON form, each with `type`) in one request: a receipt or the error, per command."""
        return self.run(Calls.send_many(commands))

    def ingest_session(self, messages: Sequence[Mapping[str, Any]] | None = None, *, session_data: str | None = None,
                       session_id: str | None = None, agent_id: str | None = None, user_id: str | None = None,
                       metadata: Mapping[str, Any] | None = None,
                       idempotency_key: str | None = None) -> SessionReceipt:
        body = session_body(messages, session_data, session_id, agent_id, user_id, metadata)
        return self.run(Calls.ingest_session(body, idempotency_key))

    # -- reads (each waits for the last write, unless read_your_writes is off) -------------------

    def query(self, **filters: Any) -> MemoryPage:
        """Memories of the key's org; filters as `query_params` names them (tags, text, limit, cursor...)."""
        return self.run(Calls.query(query_params(**filters)))

    def get(self, memory_id: str, *, agent_id: str | None = None, as_of: datetime | None = None) -> Memory:
        return self.run(Calls.get(memory_id, agent_id, as_of))

    def history(self, memory_id: str, *, agent_id: str | None = None) -> list[HistoryEntry]:
        return self.run(Calls.history(memory_id, agent_id))

    def session(self, session_id: str, *, agent_id: str | None = None) -> SessionView:
        return self.run(Calls.session(session_id, agent_id))

    def hierarchy(self, *, agent_id: str | None = None, session_id: str | None = None, levels: Sequence[str] = (),
                  since: datetime | None = None, until: datetime | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
        return self.run(Calls.hierarchy({"agent_id": agent_id, "session_id": session_id,
                                         "level": list(levels) or None, "since": since, "until": until,
                                         "limit": limit}))

    def stats(self) -> list[dict[str, Any]]:
        return self.run(Calls.stats())

    def stats_report(self, top_tags: int = 100) -> StatsReport:
        return self.run(Calls.stats_report(top_tags))

    def trending(self, *, hours: int = 24, top: int = 10, until: datetime | None = None) -> Trending:
        return self.run(Calls.trending(hours, top, until))

    def analytics(self, *, since: date | None = None, until: date | None = None) -> Analytics:
        return self.run(Calls.analytics(since, until))

    def feed(self, agent_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        return self.run(Calls.feed(agent_id, limit))

    def health(self) -> HealthReport:
        return self.run(Calls.health())

    # -- live events ------------------------------------------------------------------------------

    def events(self, *, agent_id: str | None = None, types: Sequence[str] = (), since: str | None = None,
               reconnect_for: float = RECONNECT_FOR_S) -> Iterator[LiveEvent]:
        """Live events from now (or after cursor `since`); reconnects after a drop, resuming after
        the last event received. Ends only when the caller stops iterating (or after
        `reconnect_for` seconds without a connection: `StoreUnavailable`)."""
        cursor, parser, failed_since = since, SseParser(), None
        timeout = httpx.Timeout(TIMEOUT_S, read=STREAM_SILENCE_S)
        while True:
            try:
                with self.http.stream("GET", "/v1/events", timeout=timeout,
                                      **self._events_request(agent_id, types, cursor)) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_from_problem(response.status_code, _body(response), write=False)
                    failed_since = None
                    for line in response.iter_lines():
                        for event in parser.feed(line):
                            cursor = event.id
                            yield event
            except httpx.TransportError as e:
                failed_since = failed_since or time.monotonic()
                if time.monotonic() - failed_since > reconnect_for:
                    raise _unreachable(self.base_url, e) from e
            parser = SseParser(retry_ms=parser.retry_ms)  # a half-received event is dropped; its id was not seen
            time.sleep((parser.retry_ms or 1000) / 1000)


class AsyncClient(_Base):
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
            response = await self.http.request(call.method, call.path, params=self._params(call), json=call.json,
                                               headers=call.headers)
        except httpx.TransportError as e:
            raise _unreachable(self.base_url, e) from e
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
                        raise error_from_problem(response.status_code, _body(response), write=False)
                    failed_since = None
                    async for line in response.aiter_lines():
                        for event in parser.feed(line):
                            cursor = event.id
                            yield event
            except httpx.TransportError as e:
                failed_since = failed_since or time.monotonic()
                if time.monotonic() - failed_since > reconnect_for:
                    raise _unreachable(self.base_url, e) from e
            parser = SseParser(retry_ms=parser.retry_ms)
            await asyncio.sleep((parser.retry_ms or 1000) / 1000)
