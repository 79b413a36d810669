"""The operators' `memledger bench`: raw server limits and the ledger's figures, side by side."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import typer

from memledger.bench import render_table, run_benchmark, write_json

from .common import console, settings


def register(app: typer.Typer) -> None:
    """Add the `bench` command to `app`."""
    app.command("bench")(bench)


def bench(
    events: int = typer.Option(20_000, "--events", min=1, help="Commands in the data set."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed repetitions per figure (medians; plus one warm-up)."),
    json_file: Path | None = typer.Option(None, "--json", metavar="FILE", help="Also write the figures as JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated data set."),
    query_rows: int | None = typer.Option(None, "--query-rows", min=1,
                                          help="Memories in the table the query latency is measured on "
                                               "(default 5x --events, at most 100k; the target is stated at 1M)."),
) -> None:
    """Measure append throughput and latency against raw XADD/XRANGE/COPY limits.

    Runs in a namespace of its own on the configured servers and deletes everything it
    wrote at the end (also on Ctrl-C). Against a Redis without AOF it needs
    MEMLEDGER_ALLOW_VOLATILE=1, like any other ledger writer.
    """
    with sigterm_interrupts():
        report = run_benchmark(settings(), events=events, repeat=repeat, seed=seed, progress=True,
                               query_rows=query_rows)
    console.print(render_table(report))
    if report.failed:
        console.print(f"[red]targets missed:[/] {', '.join(report.failed)}")
    if json_file is not None:
        write_json(report, json_file)
        console.print(f"figures written to {json_file}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Treat SIGTERM (a CI timeout, `kill`) like Ctrl-C, so the bench namespace is still removed."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
