"""`memledger mcp`: the MCP server on stdio (memledger/mcp/), for desktop agents and IDEs."""

from __future__ import annotations

import os

import typer

from .common import settings


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp_stdio)


def mcp_stdio() -> None:
    """Serve memory tools over MCP on stdin/stdout, as the API key in MEMLEDGER_API_KEY (its org, its agent).

    An MCP client starts it; see the README's "MCP" section for a client configuration.
    """
    from memledger.mcp.stdio import ENV_KEY, serve_stdio

    serve_stdio(settings(), os.environ.get(ENV_KEY))
