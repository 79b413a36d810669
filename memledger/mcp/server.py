"""The MCP server: memory-ledger's tools and resources on the official SDK (`mcp` 2.x,
`mcp.server.mcpserver.MCPServer`), over whichever `Scope` says whose App a call runs on.

    build_server(StdioScope(app, principal)).run()      `memledger mcp` (stdio)
    build_server(HttpScope(pool))                       mounted at /mcp by `memledger serve`

`LedgerServer.call_tool` turns arguments that fail their schema into the API's `invalid`
problem (with `errors` per argument) instead of the SDK's free text.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import ValidationError

from .problems import tool_error, unexpected, validation_problem
from .resources import RESOURCES
from .scope import Scope
from .tools import TOOLS

__all__ = ["LedgerServer", "build_server"]

INSTRUCTIONS = """Your long-term memory. Before answering, search_memories for what you were told
before; store_memory what is worth keeping (one fact per memory, with tags); update_memory when a
fact changes; forget_memory when asked to forget. Writes return a consistency_token: pass it as
consistent_with to a read that must see the write. Errors are JSON {code, detail, errors?}."""


class LedgerServer(MCPServer[Any]):
    """An MCPServer whose tools run on `scope`'s App."""

    def __init__(self, scope: Scope):
        super().__init__("memory-ledger", instructions=INSTRUCTIONS, version="1", log_level="WARNING")
        self.scope = scope
        self.arguments: dict[str, frozenset[str]] = {}  # each tool's argument names

    def add_ledger_tool(self, fn: Callable[..., Any], annotations: ToolAnnotations) -> None:
        self.add_tool(fn, annotations=annotations, structured_output=False)
        self.arguments[fn.__name__] = frozenset(inspect.signature(fn).parameters) - {"ctx"}

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None,
                        ) -> CallToolResult | InputRequiredResult:
        unknown = sorted(set(arguments) - self.arguments.get(name, frozenset(arguments)))
        if unknown:  # the SDK would drop them silently; the API refuses an unknown field
            return tool_error(unexpected(unknown))
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            if isinstance(error.__cause__, ValidationError):
                return tool_error(validation_problem(error.__cause__))
            raise


def build_server(scope: Scope) -> LedgerServer:
    server = LedgerServer(scope)
    for fn, annotations in TOOLS:
        server.add_ledger_tool(fn, annotations)
    for uri, fn, name in RESOURCES:
        server.resource(uri, name=name, mime_type="application/json")(fn)
    return server
