"""Who is calling, and the App a request runs on: one FastAPI dependency, `principal_app`.

`Authorization: Bearer mlk_...` is checked by `App.authenticate` (which caches a key for at
most 2 s, so a revocation takes effect within 2 s); the request then runs on
`App.for_principal`: scoped to the key's org (and agent), recording the key as each
command's `actor`, refusing what the key's role may not do (403).

`--insecure-no-auth` (local development only; the server then binds to loopback) reads
the org from an `X-Org` header (and an agent from `X-Agent`) and gives that caller every
permission of its org. No header is still 401.

Apps are not thread-safe (each holds one PostgreSQL connection), and sync routes run in a
thread pool, so each principal has a small pool of Apps: a request takes one for itself
and gives it back. Apps of principals not seen for a while are closed (at most
`MAX_PRINCIPALS` are kept).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request

from ledger import Settings
from ledger.errors import Unauthenticated
from memledger.app import App
from memledger.principal import Principal

from .middleware import timing_mark

__all__ = ["AppPool", "Caller", "Gate", "caller", "principal_app"]

#: Principals whose idle Apps are kept open; the least recently used one beyond is closed.
MAX_PRINCIPALS = 256
#: The key id recorded for callers of an insecure (no-auth) server.
INSECURE_KEY = "insecure-no-auth"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class AppPool:
    """Idle Apps per principal; `acquire` hands one to a single request at a time."""

    def __init__(self, factory: Callable[[Principal], App]):
        self.factory = factory
        self._idle: OrderedDict[Principal, list[App]] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, principal: Principal) -> App:
        with self._lock:
            idle = self._idle.get(principal)
            if idle:
                return idle.pop()
        return self.factory(principal)

    def release(self, principal: Principal, app: App) -> list[App]:
        """Give `app` back; answers the Apps of principals evicted meanwhile, for the caller to close."""
        with self._lock:
            self._idle.setdefault(principal, []).append(app)
            self._idle.move_to_end(principal)
            return self._evict()

    def _evict(self) -> list[App]:
        evicted: list[App] = []
        while len(self._idle) > MAX_PRINCIPALS:
            evicted += self._idle.popitem(last=False)[1]
        return evicted

    def close(self) -> None:
        with self._lock:
            apps = [a for idle in self._idle.values() for a in idle]
            self._idle.clear()
        for app in apps:
            app.close()


class Gate:
    """Turns a request's credentials into a `Principal` (or raises `Unauthenticated`)."""

    def __init__(self, settings: Settings, authenticator: App, insecure_no_auth: bool):
        self.settings, self.insecure = settings, insecure_no_auth
        self._authenticator, self._lock = authenticator, threading.Lock()
        self.pool = AppPool(self._open)

    def _open(self, principal: Principal) -> App:
        if self.insecure:
            return App.open(self.settings, tenant=principal.org_id, agent=principal.agent_id)
        return App.for_principal(self.settings, principal)

    def known(self, request: Request) -> Principal | None:
        """The caller without any I/O: an insecure server's headers, or a key accepted within the
        last 2 s; None when `principal` must look the key up."""
        if self.insecure:
            return _insecure_principal(request)
        return self._authenticator.cached_principal(_secret(request))

    def principal(self, request: Request) -> Principal:
        if self.insecure:
            return _insecure_principal(request)
        with self._lock:  # the authenticating App is shared by every request
            return self._authenticator.authenticate(_secret(request))

    def close(self) -> None:
        self.pool.close()
        with self._lock:
            self._authenticator.close()


def _secret(request: Request) -> str:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("this endpoint needs an API key: send `Authorization: Bearer mlk_...`")
    return secret.strip()


def _insecure_principal(request: Request) -> Principal:
    org, agent = request.headers.get("x-org"), request.headers.get("x-agent")
    if not org:
        raise Unauthenticated("this server runs with --insecure-no-auth: name your org in an `X-Org` header")
    for name, value in (("X-Org", org), ("X-Agent", agent)):
        if value is not None and not _ID.match(value):
            raise Unauthenticated(f"{name} {value!r} is not an id (letters, digits, _.:- up to 128)")
    return Principal(INSECURE_KEY, org, "agent", agent)


def gate_of(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


async def caller(request: Request) -> Principal:
    """The authenticated principal of this request (401 otherwise). Async, so that a key seen in
    the last 2 s costs no hop to a worker thread; a lookup in PostgreSQL runs in one."""
    seen: Principal | None = getattr(request.state, "principal", None)
    if seen is not None:
        return seen
    started, gate = time.perf_counter(), gate_of(request)
    found = gate.known(request)
    if found is None:
        found = await asyncio.to_thread(gate.principal, request)
    timing_mark("auth", time.perf_counter() - started)
    request.state.principal = found
    return found


async def principal_app(request: Request,
                        principal: Annotated[Principal, Depends(caller)]) -> AsyncIterator[App]:
    """The App this request runs on: the principal's scope and permissions; returned to the pool
    after. Taking and returning one does no I/O (an App connects on first use), so this runs on
    the event loop: a sync dependency would cost two hops to worker threads per request."""
    pool = gate_of(request).pool
    app = pool.acquire(principal)
    timing_mark("handler", time.perf_counter())
    try:
        yield app
    finally:
        evicted = pool.release(principal, app)
        if evicted:
            await asyncio.to_thread(_close_all, evicted)


def _close_all(apps: list[App]) -> None:
    for app in apps:
        app.close()
