"""The streamable-HTTP transport at /mcp of `memledger serve`, behind the REST API's keys.

Every HTTP request to /mcp is authenticated first, by the REST API's `Gate`
(memledger/http/auth.py: `Authorization: Bearer mlk_...`, a key cached for at most 2 s, or the
`X-Org` header of an `--insecure-no-auth` server, exactly as REST does), and refused with the
API's 401 problem when that fails; the principal then rides in the ASGI scope's `state` to
the tool call, which runs on that principal's App (memledger/mcp/scope.py `HttpScope`).

The SDK's session manager runs a task group for the sessions: `running()` must be entered
inside the FastAPI app's lifespan (memledger/http/app.py does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ledger.errors import LedgerError
from memledger.http.problems import problem_for, problem_response

from .scope import PRINCIPAL_STATE, HttpScope
from .server import build_server

if TYPE_CHECKING:
    from memledger.http.auth import Gate

__all__ = ["MCP_PATH", "McpMount"]

#: Where the transport is served.
MCP_PATH = "/mcp"


class McpMount:
    """An ASGI app: authenticate, then hand the request to the SDK's session manager."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self.server = build_server(HttpScope(gate.pool))
        self.server.streamable_http_app(streamable_http_path=MCP_PATH)  # creates the session manager
        self.manager = self.server.session_manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = await anyio.to_thread.run_sync(self.gate.principal, Request(scope))
        except LedgerError as error:
            await problem_response(problem_for(error))(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await self.manager.handle_request(scope, receive, send)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The session manager's task group: enter it in the FastAPI app's lifespan."""
        async with self.manager.run():
            yield

    def mount(self, api: FastAPI) -> None:
        """Serve at /mcp of `api` (GET, POST and DELETE, as the transport uses them)."""
        # a Route whose endpoint is an ASGI app (not a function): Starlette hands it the raw request
        route = Route(MCP_PATH, self, methods=["GET", "POST", "DELETE"], include_in_schema=False)
        api.router.routes.append(route)
