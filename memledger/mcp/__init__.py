"""The MCP surface: memory-ledger's operations as tools an LLM agent calls (official `mcp` SDK).

    server.py        build_server(scope): the tools and resources on an MCPServer
    tools.py         each tool: name, argument schema, description for a model
    calls.py         what each tool does on the App (sync, no MCP types)
    resources.py     memory://{agent}/{memory_id}, activity://{agent}
    scope.py         whose App a call runs on: the stdio key's, or each HTTP request's
    idempotency.py   the idempotency key of a write: given, or derived from session and arguments
    problems.py      errors as tool errors carrying the HTTP API's problem (one table)
    http.py          the streamable-HTTP transport at /mcp of `memledger serve`
    stdio.py         `memledger mcp`: authenticate MEMLEDGER_API_KEY, serve on stdin/stdout
"""

from __future__ import annotations

__all__: list[str] = []
