"""GET /v1/events: an org's events as Server-Sent Events, read from the ledger itself.

Each SSE event is one ledger event: `event:` its type, `data:` the event as JSON (with its
partition and stream id), `id:` a cursor (memledger/http/event_cursor.py) naming the event's
position and how far every other partition of the stream was delivered. A client that
reconnects with `Last-Event-ID: <id>` (or asks `?since=<id>`) receives exactly the events
after it, even from another server process or after a restart, because the stream is read
from the Redis Streams (App.heads, App.events), never from pub/sub or a read model. Without
either, the stream starts at the current heads. A malformed cursor is a 400 problem.

The stream shows the key's own org (and only its agent for an agent-bound key), filtered by
`agent` and `type` (repeatable). API-key events (KeyIssued, KeyRevoked) are never streamed:
keys are managed by operators, not watched by agents.

Keep-alive: a comment line (`: ping`) after `MEMLEDGER_SSE_PING_S` seconds (default 15) of
silence, so proxies keep the connection open. A stream reads when the server's head watch
(memledger/http/head_watch.py: one blocking read on every partition, for all streams) says
one of its partitions moved, and at least every second. Each read is a short, non-blocking
call in a worker thread: a client that goes away stops its stream at once and leaves no
thread or connection behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from ledger import Settings
from ledger.errors import InvalidQuery, LedgerError, NotPermitted
from ledger.events import PAYLOADS, RecordedEvent
from memledger.app import App
from memledger.log_reader import EventFilter

from . import event_cursor
from .auth import principal_app
from .event_tail import EventTail
from .head_watch import HeadWatch
from .problems import PROBLEMS, FieldError, HttpProblem, problem_body, problem_for

__all__ = ["STREAMED_TYPES", "router"]

#: The event types a stream may show (and `type` may name).
STREAMED_TYPES = frozenset(name for name in PAYLOADS if not name.startswith("Key"))
#: Seconds of silence after which a keep-alive comment is sent.
PING_S = 15.0
#: Seconds after which an idle stream reads the ledger even without a wake-up.
FALLBACK_S = 1.0
#: The reconnection delay suggested to clients (SSE `retry:`), in milliseconds.
RETRY_MS = 1000

log = logging.getLogger("memledger.http")
router = APIRouter(prefix="/v1", tags=["live"])


def _env_float(name: str, default: float) -> float:
    try:
        return max(0.001, float(os.environ.get(name, default)))
    except ValueError:
        return default


def _start(header: str | None, since: str | None, partitions: int) -> dict[int, str] | None:
    """Where the stream starts: Last-Event-ID (a reconnect) wins over `since`; None: at the heads."""
    for where, text in (("header.Last-Event-ID", header), ("query.since", since)):
        if text is not None:
            try:
                return event_cursor.decode(text.strip(), partitions)
            except InvalidQuery as e:  # a cursor the client should not have made up
                raise HttpProblem(400, "invalid_cursor", "Malformed event cursor", f"{where}: {e}",
                                  errors=[FieldError(field=where, message=str(e))]) from None
    return None


def _filter(org: str | None, agent: str | None, types: list[str] | None) -> EventFilter:
    unknown = sorted(set(types or ()) - STREAMED_TYPES)
    if unknown:
        message = f"unknown or unstreamed event type {unknown[0]!r}; one of {', '.join(sorted(STREAMED_TYPES))}"
        raise HttpProblem(422, "invalid", "Invalid request", message,
                          errors=[FieldError(field="query.type", message=message)])
    return EventFilter(types=frozenset(types or STREAMED_TYPES), org=org, agent=agent)


def _message(record: RecordedEvent, cursor: str) -> bytes:
    data = {"partition": record.position.partition, "stream_id": record.position.stream_id,
            **record.event.model_dump(mode="json")}
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (cursor.encode(), record.event.type.encode(), orjson.dumps(data))


@router.get("/events", summary="Live events of your org (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "An endless text/event-stream; `id` is a resumable cursor."},
                       **{s: d for s, d in PROBLEMS.items() if s in (400, 401, 403, 404, 422, 503)}})
async def events(
    request: Request,
    scoped: Annotated[App, Depends(principal_app)],
    agent: Annotated[str | None, Query(description="Only this agent's events.", max_length=256)] = None,
    type: Annotated[list[str] | None, Query(description="Only these event types (repeat).")] = None,  # noqa: A002
    since: Annotated[str | None, Query(description="Start after this cursor (an SSE id).", max_length=8192)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=8192)] = None,
) -> StreamingResponse:
    start = _start(last_event_id, since, scoped.settings.partitions)
    filt = _filter(scoped.tenant, agent, type)
    if scoped.tenant is None:
        raise NotPermitted("a live stream shows one org: this server's caller has none")
    own = _own_app(scoped)
    try:
        tail = await asyncio.to_thread(EventTail, own, filt, start)  # 404 here for another agent
    except BaseException:
        own.close()
        raise
    lock = threading.Lock()  # one call on `own` at a time, and close() only after the last one
    body = _stream(tail, lock, _watch(request, scoped.settings), _env_float("MEMLEDGER_SSE_PING_S", PING_S))
    # A stream cancelled before its first chunk never runs its `finally`: close it when it is dropped.
    weakref.finalize(body, _close, own, lock)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _own_app(scoped: App) -> App:
    """An App for this stream alone (its own connections, held while the stream lives), of the same scope."""
    if scoped.principal is not None:
        return App.for_principal(scoped.settings, scoped.principal)
    return App.open(scoped.settings, tenant=scoped.tenant, agent=scoped.agent)


def _watch(request: Request, settings: Settings) -> HeadWatch:
    """The server's head watch (made on first use; the event loop's thread is the only caller)."""
    watch: HeadWatch | None = getattr(request.app.state, "live_head_watch", None)
    if watch is None:
        watch = HeadWatch(settings)
        request.app.state.live_head_watch = watch
    return watch


async def _stream(tail: EventTail, lock: threading.Lock, watch: HeadWatch, ping_s: float) -> AsyncIterator[bytes]:
    def poll(heads: dict[int, str] | None) -> list[tuple[RecordedEvent, str]]:
        with lock:
            return tail.poll(heads)

    wake = watch.subscribe(tail.partitions)
    quiet_since, woken = time.monotonic(), False
    try:
        yield b"retry: %d\n\n" % RETRY_MS
        while True:
            wake.clear()  # before reading: a move during the read wakes the next wait at once
            try:
                batch = await asyncio.to_thread(poll, watch.heads(tail.partitions) if woken else None)
            except LedgerError as error:  # the headers are sent: the problem goes in the stream, which ends
                yield _problem(error)
                return
            for record, cursor in batch:
                yield _message(record, cursor)
            if batch:
                quiet_since = time.monotonic()
                continue
            silent = time.monotonic() - quiet_since
            if silent >= ping_s:
                yield b": ping\n\n"
                quiet_since, silent = time.monotonic(), 0.0
            try:  # also read now and then without a wake-up
                woken = await asyncio.wait_for(wake.wait(), min(ping_s - silent, FALLBACK_S))
            except TimeoutError:
                woken = False
    finally:
        watch.unsubscribe(wake)
        # Cancelled (the client left, or the server stops): no await is possible here, so the
        # connections are closed by a worker thread once an in-flight poll has returned.
        threading.Thread(target=_close, args=(tail.app, lock), name="sse-close", daemon=True).start()


def _problem(error: LedgerError) -> bytes:
    """An error after the stream began (a cursor behind a trim the archive cannot fill, a store
    gone): one `problem` event carrying the problem document, with no id, so a client that
    reconnects resumes where it was."""
    if problem_for(error).status >= 500:
        log.warning("live stream ended: %s", error)
    return b"event: problem\ndata: %s\n\n" % orjson.dumps(problem_body(problem_for(error)))


def _close(own: App, lock: threading.Lock) -> None:
    with lock:
        own.close()
