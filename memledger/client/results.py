"""What the Python client (memledger/client/) returns, and how an HTTP answer becomes it.

Results are frozen pydantic models that ignore fields they do not know, so a newer server does
not break an older client. Problems (`application/problem+json`) become the errors of
ledger/errors.py, chosen by the problem's `code`: a `VersionConflict` (409, or 412 from
If-Match) carries `current_version`, a `RateLimited` its `retry_after`, just as in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ledger import errors as e

__all__ = ["Analytics", "HealthReport", "HistoryEntry", "LiveEvent", "Memory", "MemoryPage", "MessageReceipt",
           "RecentMessages", "SessionReceipt",
           "SessionView", "SseParser", "Trending", "WriteReceipt", "error_from_problem", "outcome_of"]


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class WriteReceipt(Result):
    """Proof of an append; `token` is its consistency token (what `consistent_with` takes)."""

    subject_id: str | None = None
    partition: int
    stream_id: str
    version: int | None = None
    duplicate: bool = False
    event_ids: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        return f"{self.partition}-{self.stream_id}"


class SessionReceipt(Result):
    session_id: str
    partition: int
    stream_id: str
    duplicate: bool
    queued_at: datetime
    queue_position: int | None = None
    estimated_processing_s: float | None = None

    @property
    def token(self) -> str:
        return f"{self.partition}-{self.stream_id}"


class MessageReceipt(Result):
    """Proof of an appended message (or a close): `seq` is the message's number in its conversation."""

    session_id: str
    seq: int
    partition: int
    stream_id: str
    duplicate: bool = False
    event_ids: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        return f"{self.partition}-{self.stream_id}"


class RecentMessages(Result):
    """A conversation's last messages, oldest first; `source` is "cache" (Redis) or "database"."""

    session_id: str
    agent_id: str
    source: str
    messages: tuple[dict[str, Any], ...]
    status: str | None = None
    summary: str | None = None
    summary_through: int | None = None
    cache_error: str | None = None


class Memory(Result):
    org_id: str
    agent_id: str
    memory_id: str
    content: str
    memory_type: str
    tags: tuple[str, ...]
    importance: float
    metadata: dict[str, Any]
    session_id: str | None = None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    version: int
    recall_count: int = 0
    last_recalled_at: datetime | None = None


class MemoryPage(Result):
    items: tuple[Memory, ...]
    next_cursor: str | None = None
    cache: Literal["HIT", "MISS", "BYPASS"]


class HistoryEntry(Result):
    partition: int
    stream_id: str
    event: dict[str, Any]


class SessionView(Result):
    session: dict[str, Any]
    summary: list[dict[str, Any]]
    discrete: list[dict[str, Any]]


class Trending(Result):
    hours: int
    until: datetime
    tags: list[dict[str, Any]]
    memories: list[dict[str, Any]]


class Analytics(Result):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    first: str
    last: str
    agents: int
    users: int
    events: dict[str, int]
    days: list[dict[str, Any]]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Analytics:
        return cls.model_validate({**body, "first": body.get("from"), "last": body.get("to")})


class HealthReport(Result):
    """GET /v1/health; `ok` False (the server answered 503) when the ledger cannot take writes."""

    ok: bool
    redis: dict[str, Any]
    postgresql: dict[str, Any]
    migrated: bool | None = None
    persistence: dict[str, Any] | None = None
    lag: dict[str, int] = {}
    worker_heartbeat_age_s: float | None = None
    features: dict[str, Any] = {}


class LiveEvent(Result):
    """One event of GET /v1/events; `id` is the cursor to resume after it."""

    id: str
    type: str
    partition: int
    stream_id: str
    event: dict[str, Any]


#: Problem codes and the errors they are, where the class alone says it.
_CODES: dict[str, type[e.LedgerError]] = {
    "exists": e.SubjectExists, "forgotten": e.SubjectForgotten, "unknown_subject": e.UnknownSubject,
    "not_found": e.NotFound, "invalid_query": e.InvalidQuery, "rejected": e.CommandError,
    "unauthorized": e.Unauthorized, "timeout": e.Timeout, "unavailable": e.StoreUnavailable,
    "not_ready": e.ConfigurationError, "read_model": e.ProjectionError, "history_gap": e.HistoryGap,
    "unauthenticated": e.Unauthenticated, "forbidden": e.Forbidden,
}


def _by_code(code: str) -> type[e.LedgerError] | None:
    """The error class of ledger/errors.py whose own `code` is `code` (a newer error needs no entry above)."""
    found, todo = None, [e.LedgerError]
    while todo and found is None:
        cls = todo.pop()
        found = cls if code and getattr(cls, "code", None) == code and "code" in vars(cls) else None
        todo.extend(cls.__subclasses__())
    return found
#: Codes of a malformed request: a command error on writes, a query error on reads.
_MALFORMED = frozenset({"invalid", "bad_request", "invalid_cursor", "too_large", "unsupported_media_type",
                        "precondition_required"})


def error_from_problem(status: int, body: Any, write: bool) -> e.LedgerError:
    """The ledger error a problem document names (`write`: the request was a command)."""
    doc = body if isinstance(body, dict) else {}
    code, detail = str(doc.get("code", "")), str(doc.get("detail") or doc.get("title") or f"HTTP {status}")
    if code in ("version_conflict", "precondition_failed"):
        return e.VersionConflict(detail, int(doc.get("current_version") or 0))
    if code == "rate_limited":
        return e.RateLimited(detail, float(doc.get("retry_after") or 1.0))
    known = _CODES.get(code) or (None if code in _MALFORMED else _by_code(code))
    if known is not None:
        return known(detail)
    if code in _MALFORMED or status in (400, 413, 415, 422):
        return e.InvalidCommand(detail) if write else e.InvalidQuery(detail)
    if status == 404:
        return e.NotFound(detail)
    if status >= 500:
        return e.StoreUnavailable(f"the server answered {status}: {detail}")
    return e.LedgerError(f"the server answered {status} ({code or 'no code'}): {detail}")


def outcome_of(result: dict[str, Any]) -> WriteReceipt | e.CommandError:
    """One item of a POST /v1/commands answer: its receipt, or the `CommandError` it was."""
    if result.get("ok"):
        return WriteReceipt.model_validate(result)
    if result.get("code") == "not_found":  # a command for another org or agent: the App's Unauthorized
        return e.Unauthorized(str(result.get("detail") or "not found"))
    error = error_from_problem(int(result.get("status") or 422), result, write=True)
    return error if isinstance(error, e.CommandError) else e.CommandError(str(error))


@dataclass
class SseParser:
    """Text/event-stream lines in, events out (comments and `retry:` noted, never yielded)."""

    retry_ms: int | None = None
    _id: str | None = None
    _type: str = "message"
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Iterator[LiveEvent]:
        if line == "":
            yield from self._dispatch()
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)

    def _dispatch(self) -> Iterator[LiveEvent]:
        import orjson

        if self._data and self._type == "problem":  # the server ended the stream with an error
            problem = orjson.loads("\n".join(self._data))
            self._type, self._data = "message", []
            raise error_from_problem(int(problem.get("status") or 500), problem, write=False)
        if self._data and self._id is not None:
            body = orjson.loads("\n".join(self._data))
            yield LiveEvent(id=self._id, type=self._type, partition=body.pop("partition"),
                            stream_id=body.pop("stream_id"), event=body)
        self._type, self._data = "message", []
