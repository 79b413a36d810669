"""Shared CLI plumbing: settings, the App, command groups, the options every surface shares, output."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from ledger import Settings
from memledger.app import App


@dataclass
class _State:
    debug: bool = False


state = _State()
console = Console()

#: Options with one meaning on every command that has them. Short flags: -p projection, -n limit,
#: -t event type, -y yes, -f follow, -w workers; partitions, processes and threads are long-only.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
OrgOpt = Annotated[str, typer.Option("--org", help="Organisation (every read is scoped to one).")]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="Only this agent.")]
SinceOpt = Annotated[datetime | None, typer.Option("--since", help="From this time (ISO 8601; UTC when naive).")]
UntilOpt = Annotated[datetime | None, typer.Option("--until", help="Before this time (ISO 8601; UTC when naive).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")]


@cache
def settings() -> Settings:
    return Settings()


def open_app(system: bool = False) -> App:
    """The App on the configured settings; `system` for operators' commands that append internal ones."""
    return App.open(settings(), system=system)


def group(help: str) -> typer.Typer:
    """A command group that prints its help when run bare (exit 0), instead of failing or acting."""
    sub = typer.Typer(help=help, invoke_without_command=True, no_args_is_help=False)
    sub.callback()(show_help)
    return sub


def show_help(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def utc(moment: datetime | None) -> datetime | None:
    """A time given on the command line; naive ones are UTC, as every time in the ledger is."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS).decode())
