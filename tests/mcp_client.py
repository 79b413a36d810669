"""MCP client sessions for the tests: the SDK's own client, against a real server.

    with stdio_session(settings, secret) as mcp:      # a `memledger mcp` child process
        out = mcp.call("store_memory", content="likes tea")
    with http_session(url, secret) as mcp:            # /mcp of a served API
        ...

Each session runs the SDK's async client on its own event loop in a background thread,
so the tests stay synchronous (and can call the App between tool calls).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import anyio
import httpx2
import orjson
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ledger import Settings
from memledger.bench.http_env import child_env

__all__ = ["McpSession", "MCPError", "http_session", "stdio_session"]


@dataclass
class McpSession:
    portal: BlockingPortal
    session: ClientSession
    headers: Any = None  # over HTTP: the client's headers (a test may change the key mid-session)

    def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """A tool's JSON result; AssertionError when the call is a tool error."""
        ok, body = self.attempt(tool, **arguments)
        assert ok, f"{tool} failed: {body}"
        return body

    def fail(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """A tool error's problem; AssertionError when the call succeeds."""
        ok, body = self.attempt(tool, **arguments)
        assert not ok, f"{tool} succeeded: {body}"
        return body

    def attempt(self, tool: str, **arguments: Any) -> tuple[bool, dict[str, Any]]:
        result = self.portal.call(self.session.call_tool, tool, arguments)
        text = result.content[0].text  # type: ignore[union-attr]
        return not result.is_error, orjson.loads(text)

    def tools(self) -> list[Any]:
        return list(self.portal.call(self.session.list_tools).tools)

    def read(self, uri: str) -> dict[str, Any]:
        result = self.portal.call(self.session.read_resource, uri)
        return orjson.loads(result.contents[0].text)  # type: ignore[union-attr]


@contextmanager
def _session(transport: Callable[[], AbstractAsyncContextManager[Any]], headers: Any = None,
             ) -> Iterator[McpSession]:
    @asynccontextmanager
    async def opened() -> AsyncIterator[ClientSession]:
        async with transport() as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                yield session

    try:
        with start_blocking_portal() as portal:
            with portal.wrap_async_context_manager(opened()) as session:
                yield McpSession(portal, session, headers)
    except BaseExceptionGroup as group:  # the client's task groups wrap what the test raised: unwrap it
        raise _leaf(group) from None


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def stdio_params(settings: Settings, secret: str | None) -> StdioServerParameters:
    env = child_env(settings)
    env.pop("MEMLEDGER_API_KEY", None)
    if secret is not None:
        env["MEMLEDGER_API_KEY"] = secret
    return StdioServerParameters(command=sys.executable, args=["-m", "memledger", "mcp"], env=env)


@contextmanager
def stdio_session(settings: Settings, secret: str) -> Iterator[McpSession]:
    with _session(lambda: stdio_client(stdio_params(settings, secret))) as session:
        yield session


@contextmanager
def http_session(url: str, secret: str | None = None, **headers: str) -> Iterator[McpSession]:
    auth = {"Authorization": f"Bearer {secret}"} if secret else {}
    http = httpx2.AsyncClient(headers={**auth, **headers}, timeout=30)

    @asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        async with http:
            async with streamable_http_client(f"{url}/mcp", http_client=http) as streams:
                yield streams

    with _session(transport, http.headers) as session:
        yield session
