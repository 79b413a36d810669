"""Prometheus metrics of one HTTP app: GET /metrics, fed by a middleware and read at scrape time.

What is measured where:
- the middleware (this process's traffic): request latency by method, route template and
  status (time to the response's first byte, so an SSE stream counts its start, not its
  life); commands appended, answered as duplicates (idempotent retries) and rejected by error
  code, read from the write responses; query cache results from `X-Cache-Status`;
- at scrape time, through an unscoped App opened for the scrape and closed after it (the whole
  namespace, every process): lag per projection and partition (`App.lag`), the ledger's length
  per partition and the query cache's hits and misses (`App.info`). A scrape that cannot reach
  a server still answers, with `memledger_scrape_ok 0`.

Who may scrape: /metrics needs no key but answers only a client on the loopback address (a
Prometheus agent or sidecar on the same host); to anyone else it does not exist (404). Lag and
ledger lengths are namespace-wide, so no org's key may read them. A reverse proxy in front of
the server must therefore not forward /metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as CountOf
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger import Settings
from ledger.errors import LedgerError

from .problems import HttpProblem

if TYPE_CHECKING:
    from memledger.app import App

__all__ = ["Metrics", "install"]

#: Latency buckets, in seconds: sub-millisecond appends to multi-second waits.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Methods whose responses say what was appended.
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
#: Write responses larger than this are not read for outcomes (a batch of 10k commands is ~2 MB).
MAX_OUTCOME_BODY = 8 * 1024 * 1024


@dataclass
class Metrics:
    """The registry of one app and the series its middleware moves."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.latency = Histogram("memledger_http_request_duration_seconds", "Time to the response's first byte.",
                                 ("method", "route", "status"), registry=r, buckets=BUCKETS)
        self.appended = Counter("memledger_commands_appended_total", "Commands appended through this server.",
                                registry=r)
        self.duplicates = Counter("memledger_commands_duplicate_total",
                                  "Idempotent retries answered with their original receipt.", registry=r)
        self.rejected = Counter("memledger_commands_rejected_total", "Write requests or commands refused.",
                                ("code",), registry=r)
        self.cache = Counter("memledger_http_query_cache_total", "Cached reads by X-Cache-Status.",
                             ("status",), registry=r)

    def count_outcomes(self, status: int, content_type: str, body: bytes) -> None:
        """Count what one write response says: a receipt, a problem, or a batch of them."""
        try:
            doc = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return
        if "problem+json" in content_type:
            self.rejected.labels(_code(doc)).inc()
        elif 200 <= status < 300:
            # Tallied first, then one increment per series: a batch of hundreds of commands
            # costs a few locked updates, not one (and a label lookup) per command.
            tally: CountOf[str] = CountOf()
            for item in _results(doc):
                tally[_outcome(item)] += 1
            for outcome, n in tally.items():
                if outcome == _APPENDED:
                    self.appended.inc(n)
                elif outcome == _DUPLICATE:
                    self.duplicates.inc(n)
                elif outcome:
                    self.rejected.labels(outcome).inc(n)


_APPENDED, _DUPLICATE = "\0appended", "\0duplicate"  # not codes: a code is a client-visible word


def _outcome(item: Any) -> str:
    """What one result counts as: appended, a duplicate, its rejection code, or "" (nothing)."""
    if not isinstance(item, dict):
        return ""
    ok = item.get("ok", bool(item.get("stream_id")))  # a batch result says `ok`; a receipt has a stream id
    if ok is True:
        return _DUPLICATE if item.get("duplicate") else _APPENDED
    return _code(item) if isinstance(item.get("code"), str) else ""


def _code(doc: Any) -> str:
    code = doc.get("code") if isinstance(doc, dict) else None
    return code if isinstance(code, str) and len(code) <= 64 else "unknown"


def _results(doc: Any) -> list[Any]:
    """One item per command: a batch answers a list (or {"results": [...]}), a single write one object."""
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        return list(doc["results"])
    if isinstance(doc, list):
        return doc
    return [doc]


class MetricsMiddleware:
    """Pure ASGI (no body buffering for reads, streams untouched): times and counts every request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, seen = time.perf_counter(), _Seen(scope["method"] in WRITE_METHODS)

        async def watch(message: Message) -> None:
            seen.message(message, self.metrics, scope, started)
            await send(message)

        await self.app(scope, receive, watch)


@dataclass
class _Seen:
    """What the middleware saw of one response."""

    write: bool
    status: int = 0
    content_type: str = ""
    body: list[bytes] = field(default_factory=list)
    size: int = 0

    def message(self, message: Message, metrics: Metrics, scope: Scope, started: float) -> None:
        if message["type"] == "http.response.start":
            self._start(message, metrics, scope, started)
        elif message["type"] == "http.response.body" and self.write:
            self._body(message, metrics)

    def _start(self, message: Message, metrics: Metrics, scope: Scope, started: float) -> None:
        self.status = int(message["status"])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", ())}
        self.content_type = headers.get("content-type", "")
        route = getattr(scope.get("route"), "path", None) or "<unmatched>"
        metrics.latency.labels(scope["method"], route, str(self.status)).observe(time.perf_counter() - started)
        cache = headers.get("x-cache-status")
        if cache in ("HIT", "MISS", "BYPASS"):
            metrics.cache.labels(cache).inc()
        self.write = self.write and "json" in self.content_type

    def _body(self, message: Message, metrics: Metrics) -> None:
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.size <= MAX_OUTCOME_BODY:
            self.body.append(chunk)
        if not message.get("more_body", False):
            if self.size <= MAX_OUTCOME_BODY:
                metrics.count_outcomes(self.status, self.content_type, b"".join(self.body))
            self.body, self.write = [], False


class LedgerCollector(Collector):
    """Namespace-wide series read at scrape time through an unscoped App."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> list[Any]:
        return []  # nothing fixed to describe; without this, registering would read the ledger

    def collect(self) -> Iterator[Any]:
        from memledger.app import App

        ok = GaugeMetricFamily("memledger_scrape_ok", "1 when the ledger and read models could be read.")
        families: list[Any] = []
        try:
            with App.open(self.settings) as app:
                families = _lag_families(app) + _info_families(app)
            ok.add_metric([], 1)
        except LedgerError:
            ok.add_metric([], 0)
        yield from families
        yield ok


def _lag_families(app: App) -> list[Any]:
    events = GaugeMetricFamily("memledger_projection_lag_events", "Events a projection has yet to apply.",
                               labels=("projection", "partition"))
    millis = GaugeMetricFamily("memledger_projection_lag_milliseconds", "Head time minus checkpoint time.",
                               labels=("projection", "partition"))
    for lag in app.lag():
        events.add_metric([lag.projection, str(lag.partition)], lag.behind)
        millis.add_metric([lag.projection, str(lag.partition)], lag.behind_ms)
    return [events, millis]


def _info_families(app: App) -> list[Any]:
    info = app.info()
    length = GaugeMetricFamily("memledger_ledger_events", "Events the stream of a partition holds.",
                               labels=("partition",))
    for part in info.partitions:
        length.add_metric([str(part.partition)], part.length)
    lookups = CounterMetricFamily("memledger_query_cache_lookups", "Query cache lookups, every process.",
                                  labels=("result",))
    lookups.add_metric(["hit"], info.query_cache.get("hits", 0))
    lookups.add_metric(["miss"], info.query_cache.get("misses", 0))
    return [length, lookups]


def _loopback(request: Request) -> bool:
    try:
        return request.client is not None and ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def install(app: FastAPI, settings: Settings) -> Metrics:
    """Add the metrics middleware, the namespace collector and GET /metrics to `app`."""
    metrics = Metrics()
    metrics.registry.register(LedgerCollector(settings))
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        if not _loopback(request):
            raise HttpProblem(404, "not_found", "Not found", f"no route {request.url.path}")
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
