"""Background processing on the command line (a bare `memledger worker` prints this help).

    memledger worker run         dramatiq workers + enqueuer + maintenance (Ctrl-C stops)
    memledger worker status      queue depth, per-day counts, heartbeats, oldest pending, failures
    memledger worker bench       sessions/s and queue latency, in a namespace of its own
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .common import JsonOpt, console, group, open_app, print_json, settings

if TYPE_CHECKING:
    from workers.bench import BenchResult
    from workers.status import WorkerStatus

worker_app = group("Background processing: run the dramatiq workers, see their status.")

ProcessesOpt = Annotated[int, typer.Option("--processes", min=1, help="dramatiq worker processes.")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="Threads per worker process.")]
LOG_FORMAT = "[%(asctime)s] [PID %(process)d] [%(name)s] [%(levelname)s] %(message)s"


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")


@worker_app.command("run")
def worker_run(
    processes: ProcessesOpt = 1, threads: ThreadsOpt = 2,
    no_enqueuer: Annotated[bool, typer.Option("--no-enqueuer", help="Do not run the enqueuer here.")] = False,
    no_maintenance: Annotated[bool, typer.Option("--no-maintenance", help="No expiry and retention here.")] = False,
) -> None:
    """Migrate, then run the workers, the enqueuer and the maintenance ticker until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"worker: {processes} process(es) x {threads} thread(s), namespace {settings().namespace!r}")
    with open_app() as app:
        try:
            app.run_workers(processes, threads, not no_enqueuer, not no_maintenance, stop)
        except KeyboardInterrupt:
            stop.set()


@worker_app.command("status")
def worker_status(as_json: JsonOpt = False) -> None:
    """Queue depth, processed/failed per day, worker heartbeats, the oldest unprocessed session."""
    with open_app() as app:
        status = app.processing_status()
    if as_json:
        print_json(status.as_json())
    else:
        print_status(status)


@worker_app.command("bench")
def worker_bench(
    sessions: Annotated[int, typer.Option("--sessions", min=2, help="Sessions drained from a full queue.")] = 400,
    rate: Annotated[float | None, typer.Option("--rate", help="Steady ingest rate (default: half the max).")] = None,
    duration: Annotated[float, typer.Option("--duration", min=0, help="Seconds of steady load (0: skip).")] = 20.0,
    processes: ProcessesOpt = 2, threads: ThreadsOpt = 2, as_json: JsonOpt = False,
) -> None:
    """Sessions/s with the default extractor and ingest-to-summary latency p50/p99 (own namespace, removed after)."""
    from memledger.bench.sandbox import bench_settings, drop_namespace
    from workers.bench import run_bench

    sandbox = bench_settings(settings()).model_copy(update={"extractor": "keywords"})
    try:
        result = run_bench(sandbox, sessions, rate, duration, processes, threads)
    finally:
        drop_namespace(sandbox)
    if as_json:
        print_json(result.as_json())
    else:
        print_bench(result, processes, threads)


# -- rendering -------------------------------------------------------------------------------


def print_status(status: WorkerStatus) -> None:
    q = status.queue
    in_flight = "? (not told by RabbitMQ)" if q.in_flight is None else q.in_flight
    console.print(f"queue: {q.ready} ready, {in_flight} in flight, {q.delayed} waiting to retry, {q.dead} dead; "
                  f"{status.backlog} not yet enqueued")
    oldest = status.oldest_pending
    described = (f"{oldest.session_id} ({oldest.org_id}/{oldest.agent_id}, ingested "
                 f"{oldest.ingested_at:%Y-%m-%d %H:%M:%S})" if oldest else "none")
    console.print(f"sessions: {status.pending} pending, {status.failed} failed; oldest pending: {described}")
    for table in status_tables(status):
        console.print(table)


def status_tables(status: WorkerStatus) -> list[Table]:
    days = Table("day", "processed", "failed", title="per day (UTC)")
    for day, processed, failed in status.daily:
        days.add_row(day, str(processed), str(failed))
    beats = Table("worker", "last beat", "alive", "processed", "failed", "up", title="workers")
    for b in status.workers:
        beats.add_row(b.worker, f"{b.last_beat_s:.1f}s ago", "yes" if b.alive else "[red]no[/]", str(b.processed),
                      str(b.failed), f"{b.up_s:.0f}s")
    if not status.recent_failures:
        return [days, beats]
    failures = Table("session", "org/agent", "error", title="failed sessions (newest first)")
    for f in status.recent_failures:
        failures.add_row(f.session_id, f"{f.org_id}/{f.agent_id}", f.error or "")
    return [days, beats, failures]


def print_bench(result: BenchResult, processes: int, threads: int) -> None:
    t = result.throughput
    console.print(f"throughput: {t.sessions} sessions in {t.seconds:.2f}s = {t.per_second:.1f} sessions/s "
                  f"({processes} process(es) x {threads} thread(s), keyword extractor)")
    if result.steady is not None:
        s = result.steady
        console.print(f"steady load: {s.sessions} sessions at {result.offered_rate:.1f}/s offered; latency ingest -> "
                      f"summary in the ledger {_p(s.ledger_ms)}; -> in the read model {_p(s.read_model_ms)}")


def _p(figures: dict[str, float]) -> str:
    return f"p50 {figures.get('p50', 0):.0f} ms, p99 {figures.get('p99', 0):.0f} ms" if figures else "n/a"
