"""The `memledger` console command: one thin Typer app, a module per surface.

Every command parses its options, calls the App (memledger/app.py) and renders the result;
no module here opens a connection or holds SQL. Domain errors (`LedgerError`) print as one
line and exit with the error's code; `--debug` shows the traceback. A bare group (`memledger
worker`, `memledger session`, ...) prints its help and exits 0.
"""

from __future__ import annotations

import sys

import typer

from ledger.errors import LedgerError

from . import agents, analysts, bench, demo, logs, operators, redis_models, replay, servers, sessions, worker
from . import keys, mcp, search, serve
from .common import state

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, invoke_without_command=True,
                  help="memory-ledger: an event-sourced memory store for AI agents.")


@app.callback()
def _root(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show tracebacks of domain errors.")) -> None:
    state.debug = debug
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


for surface in (agents, logs, analysts, redis_models, operators, replay, demo, bench, worker, sessions, servers,
                keys, serve, mcp, search):
    surface.register(app)


def main() -> None:
    try:
        app()
    except LedgerError as e:
        if state.debug:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
