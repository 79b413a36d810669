"""The requests of the HTTP API, built once for both clients: `Calls` makes a `Call` (method, path,
parameters, body, how to decode the answer) per operation; `ClientBase` holds what the sync and
async clients share (headers, the read-your-writes token, turning problems into errors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

import httpx
import orjson

from ledger.errors import CommandError, StoreUnavailable
from memledger.views import StatsReport

from .results import (
    Analytics,
    HealthReport,
    HistoryEntry,
    Memory,
    MemoryPage,
    MessageReceipt,
    RecentMessages,
    SessionReceipt,
    SessionView,
    Trending,
    WriteReceipt,
    error_from_problem,
    outcome_of,
)

__all__ = ["RECONNECT_FOR_S", "STREAM_SILENCE_S", "TIMEOUT_S", "Call", "Calls", "ClientBase", "Params",
           "query_params", "response_body", "session_body", "unreachable"]

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

    def body(self) -> tuple[bytes | None, dict[str, str]]:
        """The request body and headers: JSON encoded by orjson, several times faster than the
        standard library's encoder httpx would use for a batch of commands."""
        if self.json is None:
            return None, self.headers
        return orjson.dumps(self.json), {**self.headers, "Content-Type": "application/json"}


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
    def append_message(session_id: str, body: Mapping[str, Any], idempotency_key: str | None) -> Call[MessageReceipt]:
        return Call("POST", f"/v1/sessions/{session_id}/messages", lambda r: MessageReceipt.model_validate(r.json()),
                    json=_clean(body), headers=_write_headers(idempotency_key))

    @staticmethod
    def close_session(session_id: str, agent_id: str | None, idempotency_key: str | None) -> Call[MessageReceipt]:
        return Call("POST", f"/v1/sessions/{session_id}/close", lambda r: MessageReceipt.model_validate(r.json()),
                    json=_clean({"agent_id": agent_id}), headers=_write_headers(idempotency_key))

    @staticmethod
    def recent_messages(session_id: str, last: int, summary: bool, agent_id: str | None) -> Call[RecentMessages]:
        return Call("GET", f"/v1/sessions/{session_id}/messages", lambda r: RecentMessages.model_validate(r.json()),
                    params=_clean({"last": last, "summary": summary or None, "agent_id": agent_id}), read=True)

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


class ClientBase:
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
            raise error_from_problem(response.status_code, response_body(response), write=call.method != "GET")
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


def response_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:500]}


def unreachable(base_url: str, error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the memory-ledger API at {base_url} is unreachable ({type(error).__name__}: {error})")
