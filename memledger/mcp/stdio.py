"""`memledger mcp`: the MCP server on stdin/stdout, as one API key (`MEMLEDGER_API_KEY`).

The key is authenticated before the server starts (a missing, unknown or revoked key is one
`Unauthenticated` line on stderr and exit code 8, nothing served), and again on every call
(cached for at most 2 s, memledger/keyring.py), so revoking the key stops a running server.
stdout carries only JSON-RPC; anything else goes to stderr.
"""

from __future__ import annotations

from ledger import Settings
from ledger.errors import Unauthenticated
from memledger.app import App

from .scope import StdioScope
from .server import build_server

__all__ = ["ENV_KEY", "serve_stdio"]

#: The environment variable holding the key's secret.
ENV_KEY = "MEMLEDGER_API_KEY"


def serve_stdio(settings: Settings, secret: str | None) -> None:
    """Authenticate `secret`, then serve MCP on stdio until the client closes stdin."""
    if not secret or not secret.strip():
        raise Unauthenticated(f"memledger mcp needs an API key: set {ENV_KEY}=mlk_... "
                              f"(an agent key from `memledger keys create`)")
    app = App.open(settings)
    try:
        principal = app.authenticate(secret.strip())
    except BaseException:
        app.close()
        raise
    app.close()
    scope = StdioScope(App.for_principal(settings, principal), principal, secret.strip())
    try:
        build_server(scope).run("stdio")
    finally:
        scope.close()
