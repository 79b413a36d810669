"""The `memledger` console command: one thin Typer app, a module per surface.

Domain errors (`LedgerError`) print as one line and exit with the error's code;
`--debug` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

from ledger.errors import LedgerError

from . import agents, analysts, bench, demo, logs, operators, redis_models, replay, worker
from .common import state

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help="memory-ledger: an event-sourced memory store for AI agents.")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of domain errors.")) -> None:
    state.debug = debug


for surface in (agents, logs, analysts, redis_models, operators, replay, demo, bench, worker):
    surface.register(app)


def main() -> None:
    try:
        app()
    except LedgerError as e:
        if state.debug:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
