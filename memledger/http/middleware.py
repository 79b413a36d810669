"""ASGI middleware: request bodies checked before any route parses them, and Server-Timing.

`BodyGuard` makes a body's problems the same whichever route it is sent to:
- larger than `limit` bytes (by Content-Length, or counted while it arrives): 413;
- a body that is not `application/json` (or, where allowed, `application/x-ndjson`): 415;
- JSON that is malformed, not UTF-8, nested too deeply, with a key given twice or NaN: 400,
  read by the one strict reader every surface uses (commands/wire.py).
A body that passes is replayed unchanged to the route.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from commands import wire
from ledger.errors import InvalidCommand

from .problems import HttpProblem, problem_response

__all__ = ["BodyGuard", "MAX_BODY_BYTES", "PARSED_BODY", "ServerTiming", "replay_body", "timing_mark"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest request body accepted, in bytes (a transcript may be 1 MiB of text, plus JSON).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: The request state entry holding a JSON body as BodyGuard parsed it (absent for NDJSON).
PARSED_BODY = "parsed_json_body"
#: Paths that also take NDJSON bodies.
NDJSON_PATHS = ("/v1/commands",)


class BodyGuard:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            if body:
                _check(scope, body)
        except HttpProblem as problem:
            await problem_response(problem)(scope, receive, send)
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            raise _too_large(self.limit)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _too_large(self.limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _check(scope: Scope, body: bytes) -> None:
    media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    ndjson = scope["path"] in NDJSON_PATHS
    if media == "application/x-ndjson" and ndjson:
        return  # each line is read by the route, and a bad one fails alone
    if media != "application/json":
        allowed = "application/json" + (" or application/x-ndjson" if ndjson else "")
        raise HttpProblem(415, "unsupported_media_type", "Unsupported media type",
                          f"send the body as {allowed}, not {media or 'no Content-Type'}")
    try:
        parsed = wire.loads(body)
    except InvalidCommand as e:
        raise HttpProblem(400, "malformed", "Malformed JSON", str(e)) from None
    scope.setdefault("state", {})[PARSED_BODY] = parsed  # a route need not parse it again


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _too_large(limit: int) -> HttpProblem:
    return HttpProblem(413, "too_large", "Request body too large", f"a request body may be at most {limit} bytes")


def replay_body(body: bytes, receive: Receive) -> Receive:
    """`receive` for an app after the body was read: the body once, then the real messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


class ServerTiming:
    """`Server-Timing` on every response, in milliseconds up to its headers: `auth` (the key
    check), `wait` (a `consistent_with` read waiting for its write), `handler` (the route and the
    response's encoding, the wait excluded) where they happened, and `total` always; plus
    `route;desc="fast"` when memledger/http/fast_routes.py answered, and `cache;desc=...` when
    it answered a cache hit on the event loop (projections/redis/cache_probe.py).

    Parts are noted by `timing_mark` in a dict this middleware puts in a context variable."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        marks: dict[str, float] = {}
        _MARKS.set(marks)  # copied into the thread a sync route runs in: the same dict

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = _timing_header(marks, started, time.perf_counter())
                message["headers"] = [*message.get("headers", []), (b"server-timing", header.encode())]
            await send(message)

        await self.app(scope, receive, timed)


#: The timing marks of the request being served.
_MARKS: ContextVar[dict[str, float] | None] = ContextVar("server_timing", default=None)


def timing_mark(name: str, value: float) -> None:
    """Note a part of this request's Server-Timing: a duration in seconds (`auth`, `wait`), or for
    `handler` the `time.perf_counter()` at which the route began."""
    marks = _MARKS.get()
    if marks is not None:
        marks[name] = marks.get(name, 0.0) + value if name != "handler" else value


def _timing_header(marks: dict[str, float], started: float, now: float) -> str:
    parts: list[tuple[str, float]] = [(name, marks[name]) for name in ("auth", "wait") if name in marks]
    if "handler" in marks:
        parts.append(("handler", now - marks["handler"] - marks.get("wait", 0.0)))
    parts.append(("total", now - started))
    timed = ", ".join(f"{name};dur={seconds * 1000:.2f}" for name, seconds in parts)
    timed += ', route;desc="fast"' if "fast" in marks else ""
    return timed + (', cache;desc="hit on the event loop"' if "loop" in marks else "")
