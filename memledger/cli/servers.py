"""`memledger servers status|stop`: the embedded Redis and PostgreSQL that run without configured URLs.

They are started on first use under MEMLEDGER_HOME (by `memledger demo`, say) and keep running
for the next command; `stop` is how to end them. Neither command starts a server.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from .common import JsonOpt, console, group, open_app, print_json, settings

if TYPE_CHECKING:
    from memledger.servers import ServerStatus

servers_app = group("The embedded servers (used when no MEMLEDGER_*_URL is set): status, stop.")


def register(app: typer.Typer) -> None:
    app.add_typer(servers_app, name="servers")


@servers_app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Whether the embedded Redis and PostgreSQL run, their pid, address, data directory and log file."""
    with open_app() as app:
        found = app.servers()
    print_servers(found, as_json, "")


@servers_app.command("stop")
def stop(as_json: JsonOpt = False) -> None:
    """Stop the embedded servers cleanly (Redis fsyncs its AOF, PostgreSQL checkpoints); exit 1 if one runs on."""
    with open_app() as app:
        found = app.stop_servers()
    print_servers(found, as_json, "still running after the stop: see its log file")
    if any(s.running for s in found):
        raise typer.Exit(1)


def print_servers(found: list[ServerStatus], as_json: bool, running_note: str) -> None:
    if as_json:
        print_json({"home": str(settings().home), "servers": [asdict(s) for s in found]})
        return
    console.print(servers_table(found))
    if running_note and any(s.running for s in found):
        console.print(running_note)
    in_use = [name for name, url in (("Redis", settings().redis_url), ("PostgreSQL", settings().database_url)) if url]
    if in_use:
        console.print(f"(configured URLs are in use for {' and '.join(in_use)}: the embedded one is not)", style="dim")


def servers_table(found: list[ServerStatus]) -> Table:
    table = Table("server", "state", "pid", title=f"Embedded servers under {settings().home}")
    for column in ("address", "data", "log"):
        table.add_column(column, overflow="fold")
    for s in found:
        state = "running" if s.running else "stopped" + (" (stale pid file)" if s.stale_pid_file else "")
        table.add_row(s.name, state, str(s.pid or "-"), s.address or (f"port {s.port}" if s.port else "-"),
                      s.data_dir, s.log_file)
    return table
