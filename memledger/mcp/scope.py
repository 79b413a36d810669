"""Whose App a tool call runs on: one API key's, however the call arrived.

- stdio (`memledger mcp`): the process authenticated `MEMLEDGER_API_KEY` at start; every
  call runs on that key's App (`App.for_principal`), checking the key again (cached <= 2 s).
  Apps are not thread-safe, so calls take turns on it (a lock), each in a worker thread so the
  event loop keeps reading.
- streamable HTTP (`memledger serve`, /mcp): every HTTP request was authenticated by the
  mount (memledger/mcp/http.py) with the REST API's `Gate`; the call runs on an App of that
  request's principal from the Gate's pool, as a REST request does. A session opened with one
  key and continued with another is scoped by the key of each request, never the first.

A `Caller` also names the idempotency scope of the call (memledger/mcp/idempotency.py): the
stdio process's own session, or the HTTP `Mcp-Session-Id`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context

from ledger.errors import Unauthenticated
from memledger.app import App
from memledger.principal import Principal

if TYPE_CHECKING:
    from memledger.http.auth import AppPool

__all__ = ["Caller", "HttpScope", "PRINCIPAL_STATE", "Scope", "StdioScope"]

T = TypeVar("T")
#: Where the HTTP mount leaves the authenticated principal, in the ASGI scope's `state`.
PRINCIPAL_STATE = "memledger_principal"
#: The header naming a streamable-HTTP session.
SESSION_HEADER = "mcp-session-id"


@dataclass(frozen=True)
class Caller:
    """What a tool runs on: the key's App and principal, and its idempotency scope (None: none)."""

    app: App
    principal: Principal
    session: str | None


class Scope(Protocol):
    async def run(self, ctx: Context[Any, Any], call: Callable[[Caller], T]) -> T: ...


class StdioScope:
    """One key, one App, for the life of the process (one client session)."""

    def __init__(self, app: App, principal: Principal, secret: str):
        self.app, self.principal, self._secret = app, principal, secret
        self.session = uuid.uuid4().hex  # the stdio session: this process
        self._lock = threading.Lock()

    async def run(self, ctx: Context[Any, Any], call: Callable[[Caller], T]) -> T:
        def locked() -> T:
            with self._lock:
                # again on every call (cached <= 2 s): a revoked key stops working mid-session
                principal = self.app.authenticate(self._secret)
                return call(Caller(self.app, principal, self.session))

        return await anyio.to_thread.run_sync(locked)

    def close(self) -> None:
        self.app.close()


class HttpScope:
    """The principal of each HTTP request, on an App from the REST API's pool."""

    def __init__(self, pool: AppPool):
        self.pool = pool

    async def run(self, ctx: Context[Any, Any], call: Callable[[Caller], T]) -> T:
        request = ctx.request_context.request
        scope = getattr(request, "scope", None) or {}
        principal = (scope.get("state") or {}).get(PRINCIPAL_STATE)
        if not isinstance(principal, Principal):
            raise Unauthenticated("this MCP endpoint needs an API key: send `Authorization: Bearer mlk_...`")
        headers = getattr(request, "headers", None) or {}
        session = headers.get(SESSION_HEADER)

        def pooled() -> T:
            app = self.pool.acquire(principal)
            try:
                return call(Caller(app, principal, session))
            finally:
                self.pool.release(principal, app)

        return await anyio.to_thread.run_sync(pooled)
