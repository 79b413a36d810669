"""Measuring the workers: sessions/s with the default extractor, and queue latency under steady load.

Two phases on a namespace the caller provides (and removes afterwards; see
`memledger worker bench`):

1. Throughput: `sessions` sessions are ingested and enqueued while no worker runs, then
   the workers start and drain the queue. Sessions/s = (n - 1) / (time of the last
   SessionSummarized - time of the first): worker start-up is left out.
2. Latency: with the workers (and a memories projector) running, sessions are ingested
   at a steady `rate` (default: half the measured throughput) for `duration_s`. Per
   session: ingest -> SessionSummarized appended (both event times, one host clock),
   and ingest -> the summary visible in the sessions read model (the time a 5 ms poller
   saw the memories projector's checkpoint pass the summary's position).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from commands import CommandBus, open_bus
from commands.models import IngestSession
from ledger import events as ev
from ledger import open_log
from ledger.events import stream_id_key
from ledger.eventlog import EventLog, Receipt
from ledger.postgres import connect
from ledger.settings import Settings
from projections import run_projection
from projections.postgres import checkpoint_table
from projections.postgres import migrate as migrations

from .enqueuer import run_enqueuer
from .sample import sessions as sample_sessions
from .supervisor import Supervisor, WorkerOptions


@dataclass
class Phase:
    sessions: int
    seconds: float
    per_second: float
    ledger_ms: dict[str, float] = field(default_factory=dict)  # p50/p99/max: ingest -> summary appended
    read_model_ms: dict[str, float] = field(default_factory=dict)  # ingest -> summary in the read model


@dataclass
class BenchResult:
    processes: int
    threads: int
    throughput: Phase
    steady: Phase | None
    offered_rate: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(values_ms: Iterable[float]) -> dict[str, float]:
    values = sorted(values_ms)
    if not values:
        return {}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {"p50": round(q[49], 1), "p99": round(q[98], 1), "max": round(values[-1], 1)}


class SummaryWatcher:
    """Collects SessionSummarized events (session -> (event time ms, position)) as they are appended."""

    def __init__(self, log: EventLog):
        self.log = log
        self.cursors = {p: log.head(p) or "0-0" for p in range(log.partitions)}
        self.seen: dict[str, tuple[float, int, str]] = {}

    def poll(self, block_ms: int | None = 200) -> None:
        for r in self.log.wait(self.cursors, 1000, block_ms):
            self.cursors[r.position.partition] = r.position.stream_id
            if isinstance(r.event.data, ev.SessionSummarized):
                self.seen.setdefault(r.event.subject_id, (r.event.occurred_at.timestamp() * 1000,
                                                          r.position.partition, r.position.stream_id))

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.seen)} of {count} sessions summarized within {timeout_s}s")
            self.poll()


class CheckpointPoller(threading.Thread):
    """Records when the memories projection's checkpoint moves, every 5 ms."""

    def __init__(self, settings: Settings, stop: threading.Event):
        super().__init__(daemon=True)
        self.settings, self.stop = settings, stop
        self.moves: dict[int, list[tuple[float, str]]] = {}

    def run(self) -> None:
        with connect(self.settings, autocommit=True) as conn:
            while not self.stop.wait(0.005):
                now = time.time() * 1000
                for p, sid in checkpoint_table.read(conn, "memories").items():
                    moves = self.moves.setdefault(p, [])
                    if not moves or moves[-1][1] != sid:
                        moves.append((now, sid))

    def visible_at(self, partition: int, stream_id: str) -> float | None:
        target = stream_id_key(stream_id)
        return next((t for t, sid in self.moves.get(partition, []) if stream_id_key(sid) >= target), None)


def _ingest(bus: CommandBus, batch: list[IngestSession]) -> dict[str, tuple[float, Receipt]]:
    """Send `batch`; per session, the time (ms) just before sending and the receipt."""
    out, sent_at = {}, time.time() * 1000
    for command, outcome in zip(batch, bus.send_many(batch)):
        if not isinstance(outcome, Receipt):
            raise outcome
        out[command.session_id] = (sent_at, outcome)
    return out


def _throughput(settings: Settings, bus: CommandBus, count: int, options: WorkerOptions, stop: threading.Event,
                timeout_s: float, threads: list[threading.Thread]) -> Phase:
    watcher = SummaryWatcher(bus.log)
    items = list(sample_sessions(count, prefix="tput"))
    for start in range(0, count, 200):
        _ingest(bus, items[start:start + 200])
    run_enqueuer(settings, until_caught_up=True)
    supervisor = Supervisor(settings, WorkerOptions(options.processes, options.threads, maintenance=False))
    threads.append(threading.Thread(target=supervisor.run, args=(stop,), daemon=True))
    threads[-1].start()
    watcher.wait_for(count, timeout_s)
    times = sorted(t for t, _, _ in watcher.seen.values())
    seconds = max((times[-1] - times[0]) / 1000, 1e-9)
    return Phase(count, round(seconds, 3), round((count - 1) / seconds, 1))


def _steady(settings: Settings, bus: CommandBus, rate: float, duration_s: float, stop: threading.Event,
            timeout_s: float) -> Phase:
    run_projection(settings, "memories", until_caught_up=True)  # the throughput phase's backlog first
    watcher = SummaryWatcher(bus.log)
    poller = CheckpointPoller(settings, stop)
    poller.start()
    projector = threading.Thread(target=run_projection, args=(settings, "memories", False, stop), daemon=True)
    projector.start()
    items = list(sample_sessions(max(1, int(rate * duration_s)), prefix="steady", seed=1))
    sent: dict[str, tuple[float, Receipt]] = {}
    started = time.monotonic()
    for index, command in enumerate(items):
        time.sleep(max(0.0, started + index / rate - time.monotonic()))
        sent.update(_ingest(bus, [command]))
        watcher.poll(block_ms=None)
    watcher.wait_for(len(items), timeout_s)
    time.sleep(0.5)  # let the projector and the poller see the last summaries
    ledger = [watcher.seen[s][0] - sent[s][0] for s in sent]
    visible = [v - sent[s][0] for s in sent if (v := poller.visible_at(*watcher.seen[s][1:])) is not None]
    seconds = time.monotonic() - started
    return Phase(len(items), round(seconds, 3), round(len(items) / seconds, 1), percentiles(ledger),
                 percentiles(visible))


def run_bench(settings: Settings, sessions: int = 400, rate: float | None = None, duration_s: float = 20.0,
              processes: int = 2, threads: int = 2, timeout_s: float = 600.0) -> BenchResult:
    """Both phases on `settings`' namespace (which should be fresh and is left behind)."""
    migrations.upgrade(settings)
    bus = open_bus(settings)
    open_log(settings)
    stop = threading.Event()
    workers: list[threading.Thread] = []
    try:
        throughput = _throughput(settings, bus, sessions, WorkerOptions(processes, threads), stop, timeout_s, workers)
        offered = rate if rate is not None else max(1.0, throughput.per_second / 2)
        steady = _steady(settings, bus, offered, duration_s, stop, timeout_s) if duration_s > 0 else None
    finally:
        stop.set()
        for thread in workers:
            thread.join(timeout=60)
    return BenchResult(processes, threads, throughput, steady, offered)


__all__ = ["BenchResult", "Phase", "percentiles", "run_bench"]
