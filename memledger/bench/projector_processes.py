"""Projector throughput on 1, 2, 4 ... processes of one projection, over the same backlog.

`memledger bench projectors --processes 1,2,4`: a seeded data set is appended once to a
namespace of the bench's own. Each round drops and migrates the namespace's schema (an
empty read model), then:

1. the bench takes every partition's lease of the projection itself (a token of its own);
2. it starts N `memledger projector run -p memories` processes and waits until all N have
   joined as members (projections/lease.py), renewing its leases meanwhile, so that no
   process projects anything while the others are still importing;
3. it releases the leases (t0): the N processes take their shares at their next round;
4. it polls the checkpoints until every partition is at its head (t1).

Throughput = events / (t1 - t0): start-up excluded, the lease hand-over included (at most
one renewal interval, `lease_ttl_ms / 3`). The processes are then stopped with SIGTERM.

Beside it, the CPU each event cost between t0 and t1: the projector processes' own (from
/proc, start-up excluded) and their PostgreSQL backends' (`CpuMeter`, by application name).
On a machine shared with other work, wall-clock rates move with the load; CPU per event
does not, and cores / (CPU per event) is the rate no number of processes can pass.
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
from pathlib import Path

from psycopg import sql

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.events import stream_id_key
from projections.lease import Leases
from projections.postgres import migrate
from projections.postgres.checkpoint_table import PostgresCheckpoints

from .cpu_meter import CpuMeter
from .data import build_dataset
from .ledger_bench import accepted
from .sandbox import connect_pg

__all__ = ["ProcessesFigure", "Round", "run_projector_processes"]

PROJECTION = "memories"
#: Short, so that N processes settle their shares quickly; rounds are seconds long.
LEASE_TTL_MS = 1000
#: A round that takes longer has a stuck projector: it is stopped and reported.
ROUND_TIMEOUT_S = 600.0
SEND_BATCH = 500


@dataclass(frozen=True)
class Round:
    seconds: float
    python_s: float  # CPU of the projector processes between t0 and t1
    postgres_s: float  # CPU of their PostgreSQL backends


@dataclass
class ProcessesFigure:
    """The rounds of one process count, and the load average before each."""

    processes: int
    events: int
    rounds: list[Round] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [self.events / r.seconds for r in self.rounds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def cpu_us(self) -> tuple[float, float]:
        """Median CPU microseconds per event: the projectors' Python, their PostgreSQL backends'."""
        return (1e6 * statistics.median(r.python_s for r in self.rounds) / self.events,
                1e6 * statistics.median(r.postgres_s for r in self.rounds) / self.events)

    def ceiling(self, cores: int) -> float:
        """Events/s that `cores` cores could not pass at this CPU cost per event."""
        return cores * 1e6 / sum(self.cpu_us())

    def as_json(self) -> dict[str, object]:
        python_us, postgres_us = self.cpu_us()
        return {"processes": self.processes, "events": self.events, "median_events_per_s": round(self.median),
                "rounds_events_per_s": [round(r) for r in self.rates], "loadavg": self.loads,
                "python_us_per_event": round(python_us, 1), "postgres_us_per_event": round(postgres_us, 1),
                "cpu_ceiling_events_per_s": round(self.ceiling(os.cpu_count() or 1))}


def fill(settings: Settings, events: int, seed: int) -> int:
    """Append the seeded data set of `events` commands; the number of events appended."""
    models = build_dataset(seed, events, settings.partitions).models("procs")
    bus = open_bus(settings)
    try:
        return sum(accepted(bus.send_many(models[i:i + SEND_BATCH])) for i in range(0, len(models), SEND_BATCH))
    finally:
        bus.log.close()


def _reset_schema(settings: Settings) -> None:
    with connect_pg(database_url(settings)) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.db_schema)))
    migrate.upgrade(settings)


def _env(settings: Settings) -> dict[str, str]:
    from workers.supervisor import child_env  # every setting, with the URLs resolved

    return {**child_env(settings), "MEMLEDGER_LEASE_TTL_MS": str(LEASE_TTL_MS)}


@contextmanager
def _projectors(settings: Settings, n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    command = [sys.executable, "-m", "memledger", "projector", "run", "-p", PROJECTION]
    # Their stderr goes to files, not pipes: a pipe nobody reads would block a chatty projector.
    errors = [tempfile.TemporaryFile() for _ in range(n)]
    procs = [subprocess.Popen(command, env=_env(settings), stdout=subprocess.DEVNULL, stderr=err) for err in errors]
    try:
        yield procs
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


def _alive(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"a projector exited with code {proc.returncode} during the bench; run "
                               f"`memledger projector run -p {PROJECTION}` with the same settings to see its error")


def _hold_until_joined(leases: Leases, procs: Sequence[subprocess.Popen[bytes]], partitions: list[int]) -> None:
    """Hold every lease (renewing it) until all `procs` are members; `leases.join` is not called,
    so the bench itself never counts as a member."""
    client = leases.log.redis_client_for_workers()
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while int(client.zcard(leases.members_key)) < len(procs):
        _alive(procs)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the projectors did not all start within {ROUND_TIMEOUT_S:.0f}s")
        leases.take(partitions)
        time.sleep(LEASE_TTL_MS / 5000)


def _caught_up(checkpoints: dict[int, str], heads: dict[int, str]) -> bool:
    return all(stream_id_key(checkpoints.get(p, "0-0")) >= stream_id_key(h) for p, h in heads.items())


def _cpu_s(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    ticks = 0
    for proc in procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def one_round(settings: Settings, n: int, heads: dict[int, str]) -> Round:
    """From the lease hand-over to every partition caught up, with `n` projector processes."""
    _reset_schema(settings)
    log = open_log(settings)
    leases = Leases(log, PROJECTION, LEASE_TTL_MS, token=f"bench:{os.getpid()}")
    partitions = list(range(settings.partitions))
    try:
        assert leases.take(partitions) == set(partitions), "a projector of this namespace is already running"
        # The bench's own connection opens before the meter, so that its backend is not counted.
        with connect_pg(database_url(settings)) as conn, CpuMeter(settings) as meter, \
                _projectors(settings, n) as procs:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.db_schema)))
            _hold_until_joined(leases, procs, partitions)
            checkpoints = PostgresCheckpoints(conn, PROJECTION)
            started, cpu_before = time.monotonic(), _cpu_s(procs)
            leases.release(partitions)
            while not _caught_up(checkpoints.load(), heads):
                _alive(procs)
                if time.monotonic() - started > ROUND_TIMEOUT_S:
                    raise RuntimeError(f"{n} projector(s) did not catch up within {ROUND_TIMEOUT_S:.0f}s")
                time.sleep(0.02)
            seconds, python_s = time.monotonic() - started, _cpu_s(procs) - cpu_before
        return Round(seconds, python_s, meter.postgres_s)
    finally:
        log.close()


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_projector_processes(settings: Settings, processes: Sequence[int], events: int, rounds: int,
                            seed: int = 7, progress: Callable[[str], None] | None = None,
                            stop: threading.Event | None = None) -> list[ProcessesFigure]:
    """Rounds of each process count over one backlog (in `settings`' namespace, which the caller drops)."""
    migrate.upgrade(settings)
    appended = fill(settings, events, seed)
    log = open_log(settings)
    try:
        heads = {p: h for p in range(settings.partitions) if (h := log.head(p))}
    finally:
        log.close()
    figures = [ProcessesFigure(n, appended) for n in processes]
    for i in range(rounds):  # interleaved, so a change of the machine's load hits every count alike
        for figure in figures:
            if stop is not None and stop.is_set():
                return figures
            figure.loads.append(_load())
            figure.rounds.append(one_round(settings, figure.processes, heads))
            if progress:
                progress(f"round {i + 1}/{rounds}: {figure.processes} process(es) {figure.rates[-1]:,.0f} events/s "
                         f"(load {figure.loads[-1]})")
    return figures
