"""The hottest routes, `GET /v1/memories`, `POST /v1/memories` and `POST /v1/commands`, served
without FastAPI's per-request machinery when a request is plain.

A profile of `memledger serve` showed FastAPI's dependency solving, parameter binding and
response-model passes costing several times what the App itself does for a cached query or a
store. This ASGI layer answers a request that uses only the common parameters, with a key seen
in the last 2 s, by calling the very functions the FastAPI routes call (`reads.memory_page`,
`writes.store`, `writes.send_batch`) with the same models, and renders errors with the same problem table. Anything
else, and anything it is unsure of (another parameter, a value it does not check itself, a body
the model refuses, a key to look up), goes on to the FastAPI route unchanged, which then
answers exactly as before: the routes stay the single definition of the API and of its spec.
tests/test_http_fast_routes.py holds the two paths to the same answers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError
from starlette.requests import Request

from ledger.errors import LedgerError
from memledger.app import App
from projections.redis.cache_probe import CacheProbe
from memledger.principal import Principal

from .auth import Gate
from .middleware import PARSED_BODY, ASGIApp, Receive, Scope, Send, replay_body, timing_mark
from .models import StoreIn
from .problems import HttpProblem, problem_body, problem_for
from .reads import memory_page, page_body, page_query
from .writes import send_batch, store

__all__ = ["FastRoutes"]

log = logging.getLogger("memledger.http")

#: The query parameters the fast GET takes, and how many values each may have.
_SCALARS = frozenset({"agent_id", "match", "min_importance", "order", "limit", "memory_type", "session_id"})
_LISTS = frozenset({"tag"})
#: Values it checks itself; any other value goes to the FastAPI route (which knows every rule).
_NUMBER = re.compile(r"^(0|1)(\.\d{1,12})?$|^\.\d{1,12}$")
_LIMIT = re.compile(r"^[1-9]\d{0,3}$")
_MAX_LENGTH = {"agent_id": 128, "memory_type": 32, "session_id": 128}
_IDEMPOTENCY = re.compile(r"^.{1,200}$", re.S)

@dataclass(frozen=True)
class _Route:
    path: str


class _Fallthrough(Exception):
    """Not a request for the fast path: the FastAPI route answers it."""


class FastRoutes:
    """ASGI middleware, innermost: answers the plain requests of `_HANDLERS`, passes on the rest."""

    def __init__(self, app: ASGIApp, api: Any):
        self.app, self.api = app, api
        self.probe: CacheProbe = api.state.cache_probe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = _HANDLERS.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if handler is None or self.api.state.gate.insecure:
            await self.app(scope, receive, send)
            return
        body = await _body(receive) if scope["method"] == "POST" else b""
        try:
            await handler(self, scope, body, send)
        except _Fallthrough:
            await self.app(scope, replay_body(body, receive), send)

    async def _run(self, scope: Scope, send: Send, principal: Principal, status: int,
                   work: Callable[[App], tuple[dict[str, Any] | bytes, dict[str, str]]],
                   on_loop: Callable[[App], Awaitable[tuple[bytes, dict[str, str]] | None]] | None = None) -> None:
        """`work` on an App of the principal's pool, in a worker thread, unless `on_loop` answers
        first on the event loop; the answer or its problem sent."""
        scope["route"] = _Route(scope["path"])  # what the metrics label a request with, as for a route
        pool = self.api.state.gate.pool
        app = pool.acquire(principal)
        timing_mark("handler", time.perf_counter())
        timing_mark("fast", 0.0)
        try:
            answer = await on_loop(app) if on_loop is not None else None
            body, headers = answer if answer is not None else await asyncio.to_thread(work, app)
        except (LedgerError, HttpProblem) as error:
            problem = problem_for(error)
            status, body, headers = problem.status, problem_body(problem), dict(problem.headers)
            headers["content-type"] = "application/problem+json"
        except Exception as error:  # the FastAPI route would answer a bare 500 too, and log it
            log.error("unexpected %s on %s %s", type(error).__name__, scope["method"], scope["path"], exc_info=error)
            problem = problem_for(error)
            status, body, headers = problem.status, problem_body(problem), {"content-type": "application/problem+json"}
        finally:
            for old in pool.release(principal, app):
                await asyncio.to_thread(old.close)
        await _send(send, status, body if isinstance(body, bytes) else orjson.dumps(body), headers)


def _principal(scope: Scope, gate: Gate) -> Principal:
    """The caller, from a key accepted in the last 2 s (anything else: the route's own auth)."""
    started = time.perf_counter()
    try:
        principal = gate.known(Request(scope))
    except LedgerError:
        raise _Fallthrough from None
    if principal is None:
        raise _Fallthrough
    timing_mark("auth", time.perf_counter() - started)
    return principal


async def _get_memories(self: FastRoutes, scope: Scope, _: bytes, send: Send) -> None:
    args = _query_args(scope)
    principal = _principal(scope, self.api.state.gate)

    def work(app: App) -> tuple[bytes, dict[str, str]]:
        body, cache = memory_page(app, **args)
        return body, {"x-cache-status": cache}

    async def cached(app: App) -> tuple[bytes, dict[str, str]] | None:
        cache = app.open_cache()
        if cache is None:
            return None  # the App's first query opens its store (and checks the schema) in a thread
        try:
            query = app.scoped(page_query(app, **args))
        except LedgerError:
            return None  # the thread path raises it again and answers its problem
        rows = await self.probe.rows(cache, query)
        if rows is None:
            return None
        timing_mark("loop", 0.0)
        return page_body(query, rows, "HIT", args.get("limit", 20)), {"x-cache-status": "HIT"}

    await self._run(scope, send, principal, 200, work, cached)


def _query_args(scope: Scope) -> dict[str, Any]:
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    names = [name for name, _ in pairs]
    if not set(names) <= _SCALARS | _LISTS or any(names.count(n) > 1 for n in _SCALARS):
        raise _Fallthrough
    args: dict[str, Any] = {"tags": tuple(v for n, v in pairs if n == "tag")}
    for name, value in pairs:
        if name in _MAX_LENGTH:
            if len(value) > _MAX_LENGTH[name]:
                raise _Fallthrough
            args[name] = value
        elif name in ("match", "order"):
            if value not in (("any", "all") if name == "match" else ("recent", "importance")):
                raise _Fallthrough
            args[name] = value
        elif name == "min_importance":
            if not _NUMBER.match(value) or float(value) > 1.0:
                raise _Fallthrough
            args[name] = float(value)
        elif name == "limit":
            if not _LIMIT.match(value) or int(value) > 1000:
                raise _Fallthrough
            args[name] = int(value)
    return args


async def _post_memories(self: FastRoutes, scope: Scope, raw: bytes, send: Send) -> None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    idempotency_key = headers.get("idempotency-key")
    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json" or (
            idempotency_key is not None and not _IDEMPOTENCY.match(idempotency_key)) or scope.get("query_string"):
        raise _Fallthrough
    try:
        body = StoreIn.model_validate(orjson.loads(raw))
    except (ValidationError, orjson.JSONDecodeError):
        raise _Fallthrough from None
    principal = _principal(scope, self.api.state.gate)

    def work(app: App) -> tuple[dict[str, Any], dict[str, str]]:
        receipt, answer_headers = store(app, principal, body, idempotency_key)
        return receipt.model_dump(mode="json"), answer_headers

    await self._run(scope, send, principal, 201, work)


async def _post_commands(self: FastRoutes, scope: Scope, raw: bytes, send: Send) -> None:
    content_type = _header(scope, b"content-type")
    if scope.get("query_string") or content_type.split(";")[0].strip().lower() not in _BATCH_TYPES:
        raise _Fallthrough
    parsed = scope.get("state", {}).get(PARSED_BODY)  # BodyGuard's parse of a JSON body
    principal = _principal(scope, self.api.state.gate)
    await self._run(scope, send, principal, 200, lambda app: send_batch(app, principal, raw, parsed, content_type))


_BATCH_TYPES = ("application/json", "application/x-ndjson")


def _header(scope: Scope, name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name), "")


_HANDLERS: dict[tuple[str, str], Callable[[FastRoutes, Scope, bytes, Send], Awaitable[None]]] = {
    ("GET", "/v1/memories"): _get_memories,
    ("POST", "/v1/memories"): _post_memories,
    ("POST", "/v1/commands"): _post_commands,
}


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if not any(k == b"content-type" for k, _ in raw):
        raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)
