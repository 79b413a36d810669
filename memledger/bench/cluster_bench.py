"""Append throughput on a 3-master Redis Cluster against one Redis, in the same run.

`memledger bench cluster` starts both on loopback (memledger.local_cluster: AOF on,
appendfsync everysec, as the ledger requires), then for each of `rounds` rounds and each
target runs `writers` processes that each append `commands` commands through
`EventLog.append_many` in batches of `batch` (one script call per partition touched, as the
command bus sends them). A round's figure is all commands over the wall time from the moment
every writer is ready until the last one is done; the report gives the median of the rounds
and the load average beside it. The servers and their data are removed at the end.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.table import Table

from ledger import Settings, open_log
from ledger.codec import encode
from ledger.eventlog import Append
from ledger.events import Event, MemoryStored
from ledger.ids import uuid7
from memledger.local_cluster import LocalCluster, free_port, start_redis

__all__ = ["ClusterFigure", "as_json", "cluster_table", "run_cluster_bench"]

#: Partitions of the bench namespace (spread over the three masters by their hash tags).
PARTITIONS = 16
#: The events' own time (fixed: the bench measures appends, not clocks).
_NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ClusterFigure:
    target: str  # "single" | "cluster"
    writers: int
    commands_per_s: list[float]  # one per round
    load: list[str]  # /proc/loadavg's first three fields at the end of each round

    @property
    def median(self) -> float:
        return statistics.median(self.commands_per_s)


def _commands(writer: int, commands: int) -> list[Append]:
    out = []
    for n in range(commands):
        agent = f"w{writer}a{n % 64}"
        data = MemoryStored(content=f"memory {n}")
        event = Event(event_id=uuid7(), type=data.type_name, schema_version=data.schema_version, org_id="bench",
                      agent_id=agent, subject_id=f"m{n}", occurred_at=_NOW, data=data)
        out.append(Append("bench", agent, "m", f"m{n}", "create", (str(event.event_id),), (encode(event),)))
    return out


def _writer(url: str, namespace: str, writer: int, commands: int, batch: int, ready: Any, go: Any,
            done: Any) -> None:
    items = _commands(writer, commands)
    log = open_log(Settings(redis_url=url, namespace=namespace, partitions=PARTITIONS))
    ready.wait()
    go.wait()
    for start in range(0, len(items), batch):
        for outcome in log.append_many(items[start:start + batch]):
            if not hasattr(outcome, "stream_id"):
                raise RuntimeError(f"an append was refused: {outcome}")
    log.close()
    done.put(time.perf_counter())


def _round(url: str, writers: int, commands: int, batch: int) -> float:
    mp = multiprocessing.get_context("spawn")
    ready, go, done = mp.Barrier(writers + 1), mp.Event(), mp.Queue()
    namespace = "bench" + uuid.uuid4().hex[:8]
    procs = [mp.Process(target=_writer, args=(url, namespace, w, commands, batch, ready, go, done))
             for w in range(writers)]
    for p in procs:
        p.start()
    ready.wait(timeout=120)
    started = time.perf_counter()
    go.set()
    ends = [done.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a writer process failed (exit code {p.exitcode})")
    return float(writers * commands / (max(ends) - started))


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_cluster_bench(writers: int = 4, commands: int = 5000, batch: int = 10, rounds: int = 3) -> list[ClusterFigure]:
    """Measure both targets, alternating them round by round so drifting load hits both alike."""
    rates: dict[str, list[float]] = {"single": [], "cluster": []}
    loads: dict[str, list[str]] = {"single": [], "cluster": []}
    with tempfile.TemporaryDirectory(prefix="memledger-cluster-bench-") as tmp:
        single_port = free_port()
        single = start_redis(Path(tmp) / "single", single_port)
        try:
            with LocalCluster(Path(tmp) / "cluster") as cluster:
                urls = {"single": f"redis://127.0.0.1:{single_port}/0", "cluster": cluster.url}
                for _ in range(rounds):
                    for target, url in urls.items():
                        rates[target].append(_round(url, writers, commands, batch))
                        loads[target].append(_load())
        finally:
            single.terminate()
            single.wait(timeout=30)
    return [ClusterFigure(t, writers, rates[t], loads[t]) for t in rates]



def as_json(figures: list[ClusterFigure]) -> list[dict[str, Any]]:
    return [{"target": f.target, "writers": f.writers, "median_commands_per_s": round(f.median, 1),
             "rounds_commands_per_s": [round(r, 1) for r in f.commands_per_s], "load": f.load} for f in figures]


def cluster_table(figures: list[ClusterFigure]) -> Table:
    table = Table("target", "writers", "median commands/s", "rounds", "load (1/5/15 min) per round")
    for f in figures:
        table.add_row(f.target, str(f.writers), f"{f.median:,.0f}", ", ".join(f"{r:,.0f}" for r in f.commands_per_s),
                      "; ".join(f.load))
    return table
