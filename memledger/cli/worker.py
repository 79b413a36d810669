"""Background processing on the command line.

    memledger worker [run]       dramatiq workers + enqueuer + maintenance (Ctrl-C stops)
    memledger worker status      queue depth, per-day counts, heartbeats, oldest pending, failures
    memledger worker bench       sessions/s and queue latency, in a namespace of its own
    memledger session ingest     IngestSession JSON lines -> receipt and queue position each
    memledger session show ID    one session: status, summary, memories, transcript
    memledger session retry ID   process a failed session again
    memledger query hierarchy    session -> summary -> discrete memories, filtered
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from commands import open_bus
from ledger import open_log
from projections import open_memory_store
from projections.hierarchy import LEVELS, HierarchyQuery, Level, hierarchy, session_tree
from projections.postgres import migrate as migrations

from . import analysts
from .agents import send_lines
from .common import console, print_json, settings

worker_app = typer.Typer(help="Background processing: run the dramatiq workers, see their status.")
session_app = typer.Typer(no_args_is_help=True, help="Ingested sessions: ingest, show, retry.")


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")
    app.add_typer(session_app, name="session")
    analysts.query_app.command("hierarchy")(query_hierarchy)


# -- worker --------------------------------------------------------------------------


@worker_app.callback(invoke_without_command=True)
def _worker_default(ctx: typer.Context) -> None:
    """Without a sub-command: `worker run` with its defaults."""
    if ctx.invoked_subcommand is None:
        worker_run(processes=1, threads=2, no_enqueuer=False, no_maintenance=False)


@worker_app.command("run")
def worker_run(
    processes: int = typer.Option(1, "--processes", "-p", min=1, help="dramatiq worker processes."),
    threads: int = typer.Option(2, "--threads", "-t", min=1, help="Threads per worker process."),
    no_enqueuer: bool = typer.Option(False, "--no-enqueuer", help="Do not run the enqueuer here."),
    no_maintenance: bool = typer.Option(False, "--no-maintenance", help="Do not schedule expiry and retention."),
) -> None:
    """Migrate, then run the workers, the enqueuer and the maintenance ticker until SIGTERM or Ctrl-C."""
    from workers.supervisor import Supervisor, WorkerOptions

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [PID %(process)d] [%(name)s] [%(levelname)s] %(message)s")
    migrations.upgrade(settings())
    open_log(settings())  # refuse a volatile Redis here, before any child starts
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    options = WorkerOptions(processes, threads, enqueuer=not no_enqueuer, maintenance=not no_maintenance)
    console.print(f"worker: {processes} process(es) x {threads} thread(s), namespace {settings().namespace!r}")
    try:
        Supervisor(settings(), options).run(stop)
    except KeyboardInterrupt:
        stop.set()


@worker_app.command("status")
def worker_status(json: bool = typer.Option(False, "--json")) -> None:
    """Queue depth, processed/failed per day, worker heartbeats, the oldest unprocessed session."""
    from workers.status import collect

    store = open_memory_store(settings())
    try:
        status = collect(open_log(settings()), store.conn, settings().worker_heartbeat_timeout_ms / 1000)
    finally:
        store.close()
    if json:
        print_json(status.as_json())
        return
    q = status.queue
    console.print(f"queue: {q.ready} ready, {q.in_flight} in flight, {q.delayed} waiting to retry, {q.dead} dead; "
                  f"{status.backlog} not yet enqueued")
    oldest = status.oldest_pending
    since = f"{oldest.ingested_at:%Y-%m-%d %H:%M:%S}" if oldest else ""
    described = f"{oldest.session_id} ({oldest.org_id}/{oldest.agent_id}, ingested {since})" if oldest else "none"
    console.print(f"sessions: {status.pending} pending, {status.failed} failed; oldest pending: {described}")
    days = Table("day", "processed", "failed", title="per day (UTC)")
    for day, processed, failed in status.daily:
        days.add_row(day, str(processed), str(failed))
    console.print(days)
    beats = Table("worker", "last beat", "alive", "processed", "failed", "up", title="workers")
    for b in status.workers:
        beats.add_row(b.worker, f"{b.last_beat_s:.1f}s ago", "yes" if b.alive else "[red]no[/]", str(b.processed),
                      str(b.failed), f"{b.up_s:.0f}s")
    console.print(beats)
    if status.recent_failures:
        failures = Table("session", "org/agent", "error", title="failed sessions (newest first)")
        for f in status.recent_failures:
            failures.add_row(f.session_id, f"{f.org_id}/{f.agent_id}", f.error or "")
        console.print(failures)


@worker_app.command("bench")
def worker_bench(
    sessions: int = typer.Option(400, "--sessions", min=2, help="Sessions drained from a full queue (throughput)."),
    rate: float | None = typer.Option(None, "--rate", help="Steady ingest rate (default: half the throughput)."),
    duration: float = typer.Option(20.0, "--duration", min=0, help="Seconds of steady load (0: skip)."),
    processes: int = typer.Option(2, "--processes", "-p", min=1),
    threads: int = typer.Option(2, "--threads", "-t", min=1),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Sessions/s with the default extractor and ingest-to-summary latency p50/p99 (own namespace, removed after)."""
    from memledger.bench.sandbox import bench_settings, drop_namespace
    from workers.bench import run_bench

    sandbox = bench_settings(settings()).model_copy(update={"extractor": "keywords"})
    try:
        result = run_bench(sandbox, sessions, rate, duration, processes, threads)
    finally:
        drop_namespace(sandbox)
    if json:
        print_json(result.as_json())
        return
    t = result.throughput
    console.print(f"throughput: {t.sessions} sessions in {t.seconds:.2f}s = {t.per_second:.1f} sessions/s "
                  f"({processes} process(es) x {threads} thread(s), keyword extractor)")
    if result.steady is not None:
        s = result.steady
        console.print(f"steady load: {s.sessions} sessions at {result.offered_rate:.1f}/s offered; latency ingest -> "
                      f"summary in the ledger {_p(s.ledger_ms)}; -> in the read model {_p(s.read_model_ms)}")


def _p(figures: dict[str, float]) -> str:
    return f"p50 {figures.get('p50', 0):.0f} ms, p99 {figures.get('p99', 0):.0f} ms" if figures else "n/a"


# -- sessions ------------------------------------------------------------------------


@session_app.command("ingest")
def session_ingest(
    source: typer.FileBinaryRead = typer.Argument(
        "-", metavar="[FILE|-]", help="IngestSession JSON lines (`type` may be left out); '-' reads stdin."),
    json: bool = typer.Option(False, "--json", help="Print one JSON object per line."),
) -> None:
    """Append sessions; each returns at once with its receipt and queue position.

    Reads and reports exactly as `memledger send` does, one outcome per line; exits 2
    when any line was rejected.
    """
    send_lines(source, json, only="IngestSession")


@session_app.command("show")
def session_show(
    session_id: str,
    org: str = typer.Option(..., "--org"),
    agent: str | None = typer.Option(None, "--agent"),
    transcript: bool = typer.Option(False, "--transcript", help="Also print the raw transcript."),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """One session: status, summary, the memories extracted from it, and (with --transcript) the transcript."""
    store = open_memory_store(settings())
    try:
        tree = session_tree(store.conn, org, session_id, agent)
    finally:
        store.close()
    s = tree.session
    if json:
        print_json({"session": s, "summary": tree.summary, "discrete": tree.discrete})
        return
    purged = f", transcript purged {s['transcript_purged_at']:%Y-%m-%d}" if s["transcript_purged_at"] else ""
    console.print(f"[bold]{s['session_id']}[/] ({s['org_id']}/{s['agent_id']}): {s['status']}, "
                  f"{s['message_count']} messages, ingested {s['ingested_at']:%Y-%m-%d %H:%M:%S}{purged}")
    if s["error"]:
        console.print(f"[red]error:[/] {s['error']}")
    for m in tree.summary:
        console.print(f"summary ({m['memory_id']}): {m['content']}")
    table = Table("memory", "type", "imp.", "tags", "content", title=f"{len(tree.discrete)} discrete memories")
    for m in tree.discrete:
        table.add_row(m["memory_id"], m["memory_type"], f"{m['importance']:.2f}", ", ".join(m["tags"]), m["content"])
    console.print(table)
    if transcript and s["transcript"]:
        for message in s["transcript"]:
            console.print(f"[dim]{message['role']}:[/] {message['content']}")


@session_app.command("retry")
def session_retry(
    session_id: str,
    org: str = typer.Option(..., "--org"),
    agent: str | None = typer.Option(None, "--agent"),
    reason: str | None = typer.Option(None, "--reason"),
    force: bool = typer.Option(False, "--force", help="Retry even if the session is not marked failed."),
) -> None:
    """Process a failed session again (appends SessionRetryRequested; the enqueuer re-enqueues it)."""
    from workers.ingest import SessionQueue

    store = open_memory_store(settings())
    try:
        queue = SessionQueue(open_bus(settings(), system=True), store.conn)  # an operator's: RetrySession is internal
        receipt = queue.retry(org, session_id, agent, reason, force)
    finally:
        store.close()
    console.print(f"retry of {session_id} requested: p{receipt.partition} {receipt.stream_id}")


# -- query hierarchy -----------------------------------------------------------------


def query_hierarchy(
    org: str = typer.Option(..., "--org"),
    session: str | None = typer.Option(None, "--session"),
    agent: str | None = typer.Option(None, "--agent"),
    level: list[str] = typer.Option([], "--level", help="raw | summary | discrete (repeatable; default all)."),
    since: datetime | None = typer.Option(None, "--since"),
    until: datetime | None = typer.Option(None, "--until"),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """The memory hierarchy: sessions (raw), their summaries, the discrete memories under them."""
    unknown = [x for x in level if x not in LEVELS]
    if unknown:
        raise typer.BadParameter(f"--level is one of {', '.join(LEVELS)}, not {', '.join(unknown)}")
    levels: tuple[Level, ...] = tuple(x for x in LEVELS if x in level) or LEVELS
    store = open_memory_store(settings())
    try:
        rows = hierarchy(store.conn, HierarchyQuery(org, levels, session, agent, since, until, limit))
    finally:
        store.close()
    if json:
        print_json({"rows": rows})
        return
    table = Table("level", "id", "parent", "session", "type", "time", "content", title=f"{len(rows)} nodes of {org}")
    for r in rows:
        table.add_row(r["level"], r["node_id"], r["parent_id"] or "", r["session_id"] or "", r["memory_type"],
                      f"{r['at']:%Y-%m-%d %H:%M:%S}", _content(r))
    console.print(table)


def _content(row: dict[str, Any], width: int = 120) -> str:
    if row["level"] != "raw":
        text = str(row["content"])
        return text if len(text) <= width else text[: width - 1] + "…"
    if row["transcript"] is None:
        return f"[transcript purged] {row['status']}"
    return f"{len(row['transcript'])} messages, {row['status']}"
