"""`memledger serve`: the HTTP API (memledger/http/) in the foreground.

With no server URLs configured it uses the embedded Redis and PostgreSQL, as every command does,
and migrates the namespace first so that a new user's first request finds the read models.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from .common import console, open_app, settings


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[str, typer.Option("--host", envvar="MEMLEDGER_HTTP_HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, envvar="MEMLEDGER_HTTP_PORT",
                                         help="Port to listen on.")] = 8080,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="No API keys: callers name their org in X-Org. Local development only; "
                                   "binds to loopback.")] = False,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) until Ctrl-C. Run `memledger up` for the projectors."""
    from memledger.http import run

    with open_app() as app:
        app.migrate()
        app.check_ledger()  # a volatile Redis is refused here, with the fix, not at the first write
    console.print(f"serving http://{host}:{port}/v1 (docs: http://{host}:{port}/docs)")
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it
    # found: make that an exit 0, a requested stop (as `memledger up` does), not a death by signal.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _stopped)
    run(settings(), host, port, insecure_no_auth)


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
