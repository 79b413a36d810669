"""Operators' commands: migrate, up, projector run."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.live import Live
from rich.table import Table

from ledger import open_log
from projections import PROJECTIONS, open_projection, run_projection
from projections.postgres import migrate as migrations
from projections.status import PartitionLag, partition_lag

from .common import console, print_json, settings


def migrate() -> None:
    """Apply the Alembic revisions in migrations/ to the configured database."""
    migrations.upgrade(settings())
    console.print(f"migrated schema {settings().db_schema!r} to head")


projector_app = typer.Typer(no_args_is_help=True, help="Run projectors.")


@projector_app.command("run")
def projector_run(
    projection: str = typer.Option("memories", "--projection", "-p", help=f"One of: {', '.join(PROJECTIONS)}."),
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once the heads seen at start are applied."),
) -> None:
    """Run one projection in the foreground (Ctrl-C stops it cleanly)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stats = run_projection(settings(), projection, until_caught_up, stop)
    except KeyboardInterrupt:
        stop.set()
        return
    console.print(f"{projection}: applied {stats.applied} events, dead-lettered {stats.dead_lettered}")


@contextmanager
def lag_source() -> Iterator[Callable[[], list[PartitionLag]]]:
    """A function returning every projection's lag, on connections opened once (`up` polls it)."""
    log = open_log(settings())
    projections = [open_projection(name, settings()) for name in PROJECTIONS]
    try:
        yield lambda: [lag for projection in projections for lag in partition_lag(log, projection)]
    finally:
        for projection in projections:
            projection.close()


def lag_table(rows: list[PartitionLag]) -> Table:
    table = Table("projection", "partition", "checkpoint", "head", "behind", "behind ms")
    for x in rows:
        table.add_row(x.projection, str(x.partition), x.checkpoint, x.head or "-", str(x.behind), str(x.behind_ms))
    return table


def lag(json: bool = typer.Option(False, "--json")) -> None:
    """Show each projection's checkpoint, the partition head and the lag."""
    with lag_source() as rows_now:
        rows = rows_now()
    if json:
        print_json([vars(x) for x in rows])
    else:
        console.print(lag_table(rows))


def up(
    projection: list[str] = typer.Option(list(PROJECTIONS), "--projection", "-p", help="Projections to run (default: all)."),
) -> None:
    """Migrate, then run the projectors (one process each) with a live lag table; Ctrl-C stops."""
    migrations.upgrade(settings())
    children = [subprocess.Popen([sys.executable, "-m", "memledger", "projector", "run", "-p", name])
                for name in projection]
    try:
        with lag_source() as rows_now, Live(lag_table(rows_now()), console=console, refresh_per_second=2) as live:
            while all(c.poll() is None for c in children):
                time.sleep(1)
                live.update(lag_table(rows_now()))
        failed = [c.args for c in children if c.returncode not in (None, 0)]
        if failed:
            raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)


def register(app: typer.Typer) -> None:
    app.command()(migrate)
    app.command()(up)
    app.command()(lag)
    app.add_typer(projector_app, name="projector")
