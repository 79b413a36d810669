"""The `memledger` console command: one thin Typer app, a module per surface.

Domain errors (`LedgerError`) print as one line and exit with the error's code;
`--debug` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

from ledger.errors import LedgerError

from . import agents, logs
from .common import state

app = typer.Typer(no_args_is_help=True, add_completion=False, help="memory-ledger: an event-sourced memory store for AI agents.")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of domain errors.")) -> None:
    state.debug = debug


for surface in (agents, logs):
    surface.register(app)


def main() -> None:
    try:
        app(standalone_mode=False)
    except LedgerError as e:
        if state.debug:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors carry their own exit code
        from click.exceptions import ClickException
        if isinstance(e, ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
