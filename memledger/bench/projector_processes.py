"""Projector throughput on 1, 2, 4 ... processes of a projection, over the same backlog.

`memledger bench projectors --processes 1,2,4 -p memories,trending`: a seeded data set is
appended once to a namespace of the bench's own. Each round starts from an empty read model
of the projection measured: a PostgreSQL one by dropping and migrating the namespace's schema,
a Redis one by dropping its keys (its generation, checkpoints included, and its live pointers,
as `RedisProjection.drop` does), so every round projects the whole backlog. Then:

1. the bench takes every partition's lease of the projection itself (a token of its own);
2. it starts N `memledger projector run -p NAME` processes and waits until all N have
   joined as members (projections/lease.py), renewing its leases meanwhile, so that no
   process projects anything while the others are still importing;
3. it releases the leases; the N processes take their shares at their next look, within
   `projections.runtime.IDLE_LOOK_S` (t0: the first lease a projector takes);
4. it polls the projection's own checkpoints (opened from the registry, as the processes
   open it) until every partition is at its head (t1).

Throughput = events / (t1 - t0): start-up excluded, the others' take-over included (at most
IDLE_LOOK_S). The processes are then stopped with SIGTERM.

Beside it, the CPU each event cost between t0 and t1: the projector processes' own (from
/proc, start-up excluded) and the server's that holds the read model: their PostgreSQL
backends' (`CpuMeter`, by application name) or the Redis server's own account (INFO cpu:
everything it did meanwhile, the projectors' log reads included, and any other work on a
shared server). On a machine shared with other work, wall-clock rates move with the load;
CPU per event does not, and cores / (CPU per event) is the rate no number of processes can
pass (the CPU ceiling, which the issue's target compares the rate to).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from psycopg import sql
from rich import box
from rich.table import Table

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.events import stream_id_key
from ledger.log import RedisEventLog
from projections.base import Projection
from projections.lease import Leases
from projections.postgres import migrate
from projections.redis import REDIS_PROJECTIONS
from projections.registry import open_projection

from .cpu_meter import CpuMeter, cpu_ticks
from .data import DataSet, build_dataset
from .projections_bench import MEMORIES_TARGET, copy_memory_rows
from .ledger_bench import accepted
from .sandbox import connect_pg

__all__ = ["TARGET", "CopyBaseline", "ProcessesFigure", "Round", "as_json", "empty_read_model", "processes_table",
           "run_projector_processes"]

#: Short, so that N processes settle their shares quickly; rounds are seconds long.
LEASE_TTL_MS = 1000
#: A round that takes longer has a stuck projector: it is stopped and reported.
ROUND_TIMEOUT_S = 600.0
SEND_BATCH = 500
#: The issue's target for a projector's rate, as a ratio to its CPU ceiling.
TARGET = 0.8
#: The read models that live in Redis (the others live in PostgreSQL), by name.
REDIS_MODELS = {cls.name: cls for cls in REDIS_PROJECTIONS}
SERVER_SHORT = {"postgres": "PG", "redis": "Redis"}


@dataclass(frozen=True)
class Round:
    seconds: float
    python_s: float  # CPU of the projector processes between t0 and t1
    server_s: float  # CPU of the read model's server: their PostgreSQL backends, or Redis


@dataclass
class CopyBaseline:
    """A binary COPY of the backlog's final memory rows into a memories table of its own, once
    per round (interleaved with the projectors'): the raw limit of the memories projection."""

    rows: int
    seconds: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Median rows per second."""
        return statistics.median(self.rows / s for s in self.seconds)


@dataclass
class ProcessesFigure:
    """The rounds of one projection on one process count, and the load average before each."""

    projection: str
    processes: int
    events: int
    rounds: list[Round] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    copy: CopyBaseline | None = None  # memories only: its raw limit, measured in the same rounds

    def vs_copy(self) -> float | None:
        """Events/s over the COPY's rows/s (as the main bench's "vs COPY"), if measured."""
        return self.median / self.copy.rate if self.copy is not None and self.copy.seconds else None

    @property
    def server(self) -> str:
        """Where the read model lives, whose CPU counts beside the processes': postgres or redis."""
        return "redis" if self.projection in REDIS_MODELS else "postgres"

    @property
    def rates(self) -> list[float]:
        return [self.events / r.seconds for r in self.rounds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def cpu_us(self) -> tuple[float, float]:
        """Median CPU microseconds per event: the projectors' Python, the read model's server."""
        return (1e6 * statistics.median(r.python_s for r in self.rounds) / self.events,
                1e6 * statistics.median(r.server_s for r in self.rounds) / self.events)

    def ceiling(self, cores: int) -> float:
        """Events/s that `cores` cores could not pass at this CPU cost per event."""
        return cores * 1e6 / sum(self.cpu_us())

    def vs_ceiling(self, cores: int) -> float:
        """The median rate as a ratio to the CPU ceiling (the issue's target: >= TARGET)."""
        return self.median / self.ceiling(cores)

    def as_json(self, cores: int) -> dict[str, object]:
        python_us, server_us = self.cpu_us()
        return {"projection": self.projection, "server": self.server, "processes": self.processes,
                "events": self.events, "median_events_per_s": round(self.median),
                "rounds_events_per_s": [round(r) for r in self.rates], "loadavg": self.loads,
                "python_us_per_event": round(python_us, 1),
                f"{self.server}_us_per_event": round(server_us, 1), "cores": cores,
                "cpu_ceiling_events_per_s": round(self.ceiling(cores)),
                "vs_cpu_ceiling": round(self.vs_ceiling(cores), 3), "target_vs_cpu_ceiling": TARGET,
                **self._copy_json()}

    def _copy_json(self) -> dict[str, object]:
        ratio = self.vs_copy()
        if ratio is None or self.copy is None:
            return {}
        return {"copy_rows": self.copy.rows, "copy_rows_per_s": round(self.copy.rate),
                "copy_rounds_s": [round(x, 3) for x in self.copy.seconds], "vs_copy": round(ratio, 3)}


def as_json(figures: Sequence[ProcessesFigure], cores: int) -> list[dict[str, object]]:
    """Every figure measured (a run stopped early leaves some without rounds), each round's rate
    and load average included."""
    return [f.as_json(cores) for f in figures if f.rounds]


def processes_table(figures: Sequence[ProcessesFigure], partitions: int, cores: int) -> Table:
    """One row per projection and process count; each round's rate and load are in `as_json`."""
    events = f"{figures[0].events:,} events, " if figures else ""
    caption = f"target: >= {TARGET}x the CPU ceiling (cores / CPU per event); per-round figures: --json-file"
    copied = [f for f in figures if f.rounds and f.vs_copy() is not None]
    if copied and copied[0].copy is not None:
        caption += (f"\nmemories vs a COPY of its {copied[0].copy.rows:,} final rows ({copied[0].copy.rate:,.0f} rows/s, "
                    f"same rounds; target {MEMORIES_TARGET.text}): "
                    + ", ".join(f"{f.processes} process(es) {f.vs_copy():.2f}x" for f in copied))
    table = Table(title=f"projectors on N processes: {events}{partitions} partitions, "
                        f"{cores} cores",
                  caption=caption,
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    # Short headers and no per-round columns, so that a row fits one line of 100 columns.
    table.add_column("projection", no_wrap=True)
    for column in ("processes", "median ev/s", "CPU µs/ev", "ceiling ev/s", "vs CPU ceiling"):
        table.add_column(column, justify="right", no_wrap=True)
    for f in (f for f in figures if f.rounds):
        python_us, server_us = f.cpu_us()
        table.add_row(f.projection, str(f.processes), f"{f.median:,.0f}",
                      f"{python_us:.0f} Py + {server_us:.0f} {SERVER_SHORT[f.server]}",
                      f"{f.ceiling(cores):,.0f}", f"{f.vs_ceiling(cores):.2f}x")
    return table


def fill(settings: Settings, events: int, seed: int) -> tuple[int, DataSet]:
    """Append the seeded data set of `events` commands; the number of events appended, and the data set."""
    data = build_dataset(seed, events, settings.partitions)
    models = data.models("procs")
    bus = open_bus(settings)
    try:
        return sum(accepted(bus.send_many(models[i:i + SEND_BATCH]))
                   for i in range(0, len(models), SEND_BATCH)), data
    finally:
        bus.log.close()


def copy_round(settings: Settings, data: DataSet) -> float:
    """Seconds of one COPY of the data set's final rows into a fresh memories table."""
    schema = f"{settings.db_schema}_copy"
    migrate.upgrade(settings, schema=schema)
    with connect_pg(database_url(settings)) as conn:
        try:
            return copy_memory_rows(conn, schema, data.rows)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def empty_read_model(settings: Settings, projection: str) -> None:
    """Empty the read model of `projection`, checkpoints included: a Redis one's keys, or the
    whole schema for a PostgreSQL one (dropped and migrated)."""
    model = REDIS_MODELS.get(projection)
    if model is None:
        _reset_schema(settings)
        return
    opened = model.open(settings)
    try:
        opened.drop()
    finally:
        opened.close()


def _reset_schema(settings: Settings) -> None:
    with connect_pg(database_url(settings)) as conn:
        schema = sql.Identifier(settings.db_schema)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
    migrate.upgrade(settings)


def _env(settings: Settings) -> dict[str, str]:
    from workers.supervisor import child_env  # every setting, with the URLs resolved

    return {**child_env(settings), "MEMLEDGER_LEASE_TTL_MS": str(LEASE_TTL_MS)}


@dataclass
class _Projectors:
    """N `projector run` processes of one projection, each with its stderr in a file."""

    projection: str
    procs: Sequence[subprocess.Popen[bytes]]
    errors: Sequence[IO[bytes]]

    def check_alive(self) -> None:
        for proc, err in zip(self.procs, self.errors):
            if proc.poll() is not None:
                err.seek(0)
                last = err.read().decode(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"a `memledger projector run -p {self.projection}` process "
                                   f"exited with code {proc.returncode} during the bench: "
                                   f"{last[0] if last else '(nothing on stderr)'}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the processes have used so far."""
        return sum(cpu_ticks(proc.pid) for proc in self.procs) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _projectors(settings: Settings, projection: str, n: int) -> Iterator[_Projectors]:
    command = [sys.executable, "-m", "memledger", "projector", "run", "-p", projection]
    # Their stderr goes to files, not pipes: a pipe nobody reads would block a chatty projector.
    errors = [tempfile.TemporaryFile() for _ in range(n)]
    procs = [subprocess.Popen(command, env=_env(settings), stdout=subprocess.DEVNULL, stderr=err)
             for err in errors]
    try:
        yield _Projectors(projection, procs, errors)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for err in errors:
            err.close()


def _hold_until_joined(leases: Leases, running: _Projectors, partitions: list[int]) -> None:
    """Hold every lease (renewing it) until all processes are members; `leases.join` is not
    called, so the bench itself never counts as a member."""
    client = leases.log.redis_client_for_workers()
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while int(client.zcard(leases.members_key)) < len(running.procs):
        running.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the projectors did not all start within {ROUND_TIMEOUT_S:.0f}s")
        leases.take(partitions)
        time.sleep(LEASE_TTL_MS / 5000)


def _caught_up(checkpoints: dict[int, str], heads: dict[int, str]) -> bool:
    return all(stream_id_key(checkpoints.get(p, "0-0")) >= stream_id_key(h)
               for p, h in heads.items())


def _wait_caught_up(projection: Projection, heads: dict[int, str], running: _Projectors) -> None:
    started = time.monotonic()
    while not _caught_up(projection.checkpoints(), heads):
        running.check_alive()
        if time.monotonic() - started > ROUND_TIMEOUT_S:
            raise RuntimeError(f"{len(running.procs)} {projection.name} projector(s) did not "
                               f"catch up within {ROUND_TIMEOUT_S:.0f}s")
        time.sleep(0.02)


def _meter(settings: Settings, projection: str, log: RedisEventLog) -> CpuMeter:
    """The meter of the read model's server: the Redis server's own account, or the PostgreSQL
    backends of the processes started inside it."""
    if projection in REDIS_MODELS:
        return CpuMeter(settings, log.client, postgres=False)
    return CpuMeter(settings)


def one_round(settings: Settings, projection: str, n: int, heads: dict[int, str]) -> Round:
    """From the first lease a projector takes to every partition caught up, `n` processes of `projection`."""
    empty_read_model(settings, projection)
    log = open_log(settings)
    leases = Leases(log, projection, LEASE_TTL_MS, token=f"bench:{os.getpid()}")
    partitions = list(range(settings.partitions))
    # The bench's own handle opens before the meter, so that its PostgreSQL backend is not
    # counted.
    watched = open_projection(projection, settings)
    try:
        taken = leases.take(partitions)
        assert taken == set(partitions), "a projector of this namespace is already running"
        with _meter(settings, projection, log) as meter, \
                _projectors(settings, projection, n) as running:
            _hold_until_joined(leases, running, partitions)
            cpu_before = running.cpu_s()
            leases.release(partitions)
            started = _first_taken(leases, partitions)
            _wait_caught_up(watched, heads, running)
            seconds, python_s = time.monotonic() - started, running.cpu_s() - cpu_before
        server_s = meter.redis_s if projection in REDIS_MODELS else meter.postgres_s
        return Round(seconds, python_s, server_s)
    finally:
        watched.close()
        log.close()


def _first_taken(leases: Leases, partitions: list[int]) -> float:
    """The moment a projector took its first lease after the bench released them all (polled
    every millisecond): the round starts there, not at the release, which the projectors
    notice only at their next look for free leases (projections.runtime.IDLE_LOOK_S)."""
    client, keys = leases.log.redis_client_for_workers(), [leases.key(p) for p in partitions]
    deadline = time.monotonic() + ROUND_TIMEOUT_S

    def held() -> bool:
        with client.pipeline(transaction=False) as pipe:  # per key: a cluster may hold them on several nodes
            for key in keys:
                pipe.exists(key)
            return any(pipe.execute())

    while not held():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no projector took a lease within {ROUND_TIMEOUT_S:.0f}s")
        time.sleep(0.001)
    return time.monotonic()


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _heads(settings: Settings) -> dict[int, str]:
    log = open_log(settings)
    try:
        return {p: h for p in range(settings.partitions) if (h := log.head(p))}
    finally:
        log.close()


def run_projector_processes(settings: Settings, processes: Sequence[int], events: int, rounds: int,
                            seed: int = 7, progress: Callable[[str], None] | None = None,
                            stop: threading.Event | None = None,
                            projections: Sequence[str] = ("memories",)) -> list[ProcessesFigure]:
    """Rounds of each projection on each process count over one backlog (in `settings`'
    namespace, which the caller drops); `projections` are registered names."""
    migrate.upgrade(settings)
    appended, data = fill(settings, events, seed)
    heads = _heads(settings)
    baseline = CopyBaseline(len(data.rows)) if "memories" in projections else None
    figures = [ProcessesFigure(name, n, appended, copy=baseline if name == "memories" else None)
               for name in projections for n in processes]
    # Interleaved, so that a change of the machine's load hits every figure alike.
    for i in range(rounds):
        if baseline is not None and not (stop is not None and stop.is_set()):
            baseline.seconds.append(copy_round(settings, data))
        for figure in figures:
            if stop is not None and stop.is_set():
                return figures
            figure.loads.append(_load())
            figure.rounds.append(one_round(settings, figure.projection, figure.processes, heads))
            if progress:
                progress(f"round {i + 1}/{rounds}: {figure.projection} on {figure.processes} "
                         f"process(es) {figure.rates[-1]:,.0f} events/s (load {figure.loads[-1]})")
    return figures
