"""Operators' commands: migrate, up, projector run.

`up` supervises one `projector run` process per projection, and its children never outlive it:
on SIGINT, SIGTERM or SIGHUP, or an exception, `up` stops them itself (SIGTERM, then SIGKILL after
STOP_GRACE_S); if `up` is SIGKILLed, each child sees it was orphaned and stops on its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from ledger.errors import ConfigurationError, StoreUnavailable
from projections.registry import PROJECTIONS, VECTOR_PROJECTIONS

from .common import JsonOpt, console, group, open_app, print_json, settings

if TYPE_CHECKING:
    from memledger.views import Health
    from projections.status import PartitionLag

#: Signals on which `up` stops its projectors and exits 0: Ctrl-C, `kill` or a service manager, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds a projector gets after SIGTERM to finish its batch before it is SIGKILLed (by `up`, or by itself
#: when orphaned). A checkpoint commits with the writes it covers, so a kill costs at most a batch redone.
STOP_GRACE_S = 5.0
#: How often a projector started by `up` checks that `up` is still its parent.
PARENT_POLL_S = 0.5


def migrate() -> None:
    """Apply the Alembic revisions in migrations/ to the configured database."""
    with open_app() as app:
        app.migrate()
        unavailable = app.search_unavailable()
    console.print(f"migrated schema {settings().db_schema!r} to head")
    if unavailable:
        console.print(unavailable)


projector_app = group("Run projectors.")
ProjectionsHelp = f"One of: {', '.join(PROJECTIONS)}."


@projector_app.command("run")
def projector_run(
    projection: Annotated[str, typer.Option("--projection", "-p", help=ProjectionsHelp)] = "memories",
    until_caught_up: Annotated[bool, typer.Option(
        "--until-caught-up", help="Stop once the heads seen at start are applied.")] = False,
    parent_pid: Annotated[int, typer.Option("--parent-pid", hidden=True,
                                            help="Stop once PARENT_PID is no longer the parent (set by `up`).")] = 0,
) -> None:
    """Run one projection in the foreground (Ctrl-C stops it cleanly)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if parent_pid:
        stop_when_orphaned(parent_pid, stop)
    with open_app() as app:
        try:
            stats = app.run_projector(projection, until_caught_up, stop)
        except KeyboardInterrupt:
            stop.set()
            return
    console.print(f"{projection}: applied {stats.applied} events, dead-lettered {stats.dead_lettered}")


def stop_when_orphaned(parent_pid: int, stop: threading.Event) -> None:
    """Set `stop` once `parent_pid` is no longer this process's parent; exit hard if stopping takes too long.

    A SIGKILLed `up` cannot stop its children, and the kernel re-parents them (to init or a subreaper), so a
    parent pid other than the one `up` passed means `up` is gone; comparing with that pid, not the parent seen
    here, also covers `up` dying while this process was still starting. Polling getppid() from a thread is
    portable and needs no dependency. Linux's prctl(PR_SET_PDEATHSIG) was the alternative: it needs ctypes in
    a preexec_fn, which is unsafe once the parent has threads, and it fires when the forking *thread* exits.
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            if stop.wait(PARENT_POLL_S):
                return  # stopped normally (SIGTERM from `up`, Ctrl-C, --until-caught-up)
        stop.set()
        time.sleep(STOP_GRACE_S)
        os._exit(1)  # the loop did not end in time (a hung server?): do what `up` would have done, kill

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def lag_table(rows: list[PartitionLag]) -> Table:
    table = Table("projection", "partition", "checkpoint", "head", "behind", "behind ms")
    for x in rows:
        table.add_row(x.projection, str(x.partition), x.checkpoint, x.head or "-", str(x.behind), str(x.behind_ms))
    return table


def lag(as_json: JsonOpt = False) -> None:
    """Per projection and partition: the checkpoint, the partition's head, events and milliseconds behind."""
    with open_app() as app:
        rows = app.lag()
    if as_json:
        print_json([vars(x) for x in rows])
    else:
        console.print(lag_table(rows))


def health(as_json: JsonOpt = False) -> None:
    """Whether Redis and PostgreSQL answer (round-trip latency, version) and the namespace is migrated.

    Exits 0 when all is well, 4 when a server does not answer, 3 when the namespace was never migrated.
    """
    with open_app() as app:
        found = app.health()
    if as_json:
        print_json(found.as_json())
    else:
        print_health(found)
    if not found.ok:
        raise typer.Exit(ConfigurationError.exit_code if found.migrated is False else StoreUnavailable.exit_code)


def print_health(found: Health) -> None:
    for probe in (found.redis, found.postgresql):
        mark = f"[green]ok[/] {probe.latency_ms:.2f} ms" if probe.ok else "[red]unreachable[/]"
        console.print(f"{probe.name:<11} {mark}  {probe.detail}", highlight=False)
    migrated = {True: "[green]yes[/]", False: "[red]no[/]: run `memledger migrate`", None: "unknown"}[found.migrated]
    console.print(f"{'migrated':<11} {migrated}", highlight=False)


def up(
    projection: Annotated[list[str] | None, typer.Option(
        "--projection", "-p", help="Projections to run (repeatable; default: all).")] = None,
) -> None:
    """Migrate, then run the projectors (one process each) with a live lag table until asked to stop.

    SIGINT (Ctrl-C), SIGTERM and SIGHUP stop it: each projector gets SIGTERM, then SIGKILL if it is still
    running STOP_GRACE_S later, and `up` exits 0, as a requested stop that loses nothing (service managers
    count 0 as a clean stop, where 128+signal would read as a failure). It exits 1 if a projector exits on
    its own, and an exception stops the projectors the same way before it is reported.
    """
    with _stop_signals_interrupt():
        try:
            with open_app() as app:
                app.migrate()
                vector = [] if app.search_unavailable() else list(VECTOR_PROJECTIONS)  # pgvector here?
            with supervised(projection or [*PROJECTIONS, *vector]) as children:
                failed = _show_lag_while_all_run(children)
        except KeyboardInterrupt:
            return
    if failed:
        console.print(f"projector {', '.join(failed)} exited; its error is above. Fix it and run `memledger up` again.")
        raise typer.Exit(1)


def spawn_projector(name: str) -> subprocess.Popen[bytes]:
    """Start `projector run -p NAME` as a child process that stops by itself if this process dies."""
    return subprocess.Popen([sys.executable, "-m", "memledger", "projector", "run", "-p", name,
                             "--parent-pid", str(os.getpid())])


@contextmanager
def supervised(names: list[str]) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """One projector process per distinct name in `names`; all stopped on leaving, normally, by error or signal.

    A name given twice starts one process: its leases would leave a second one idle anyway.
    """
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in dict.fromkeys(names):
            children[name] = spawn_projector(name)
        yield children
    finally:
        with _signals_ignored(STOP_SIGNALS):  # a second Ctrl-C must not cut the stop short and orphan them
            stop_children(list(children.values()))


def stop_children(children: list[subprocess.Popen[bytes]], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM each child still running, give them `grace_s` in all, then SIGKILL the stragglers; reap every one."""
    for child in children:
        child.terminate()  # a no-op for a child already reaped
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _show_lag_while_all_run(children: dict[str, subprocess.Popen[bytes]]) -> list[str]:
    """Refresh the lag table every second until a projector exits; describe those that failed."""
    with open_app() as app, Live(lag_table(app.lag()), console=console, refresh_per_second=2) as live:
        while all(c.poll() is None for c in children.values()):
            time.sleep(1)
            live.update(lag_table(app.lag()))
    return [f"{name} (exit code {c.returncode})" for name, c in children.items() if c.returncode not in (None, 0)]


@contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C, so that every `finally` runs; restore after.

    Without a handler they kill the process outright and nothing stops the children. A signal ignored on entry
    (`nohup` ignores SIGHUP) stays ignored.
    """
    signals = [s for s in STOP_SIGNALS if s != signal.SIGINT and signal.getsignal(s) == signal.SIG_DFL]
    previous = {s: signal.signal(s, signal.default_int_handler) for s in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _signals_ignored(signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def register(app: typer.Typer) -> None:
    app.command()(migrate)
    app.command()(up)
    app.command()(lag)
    app.command()(health)
    app.add_typer(projector_app, name="projector")
