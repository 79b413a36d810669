"""How fast a rebuild replays history, against a raw COPY of the same events in the same run.

    python -m memledger.bench.rebuild_bench --events 100000 300000 1000000

For each size, in a namespace of its own on the configured servers (MEMLEDGER_* variables;
deleted afterwards): generate a seeded store-heavy history (70% stores, then updates,
tags, recalls, forgets over 24 agents in 4 orgs), load 99% of it into the event archive
with one COPY (timed: the raw COPY figure) and the last 1% into the streams (`EventLog.load`,
so the rebuild crosses from archive to stream, as after a trim), then time
`replay.rebuild(settings, "memories")`: shadow schema, replay, catch-up, swap. The rebuild
runs in a process of its own (spawned, so it inherits none of the generated history), whose
peak resident memory (VmHWM, not `ru_maxrss`, which Linux carries over from the parent across
fork + exec) is the rebuild's: it must not grow with history size.

The bulk-load limit, measured in the same run after the rebuild: read the same history from
the archive (every body, in pages, as the rebuild reads it), COPY the final rows of the read
model's tables into index-free copies of them, then build their indexes (the same
`maintenance_work_mem` the rebuild's index build gets). No rebuild can beat that.
Rebuild time should grow linearly with history size: the per-event time is printed too.
`memledger bench-scaling` runs the same measurement over a range of sizes (`scaling`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import resource
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from ledger import Settings, open_log
from ledger.archive import copy_rows
from ledger.partitions import partition_for
from ledger.postgres import connection
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection
from projections.postgres.shadow_schema import INDEX_BUILD_MEMORY
from replay.rebuild import BATCH, auto_workers, plan_rebuild, rebuild

from .cpu_meter import CpuMeter
from .rss import PeakRss
from .sandbox import drop_namespace

__all__ = ["Figures", "Row", "bulk_limit", "fixed_python_s", "history", "load", "main", "measure", "namespace"]

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
EPOCH_MS = int(EPOCH.timestamp() * 1000)
TAGS = ("work", "personal", "travel", "billing", "support", "health", "family", "food", "deadline", "meeting",
        "email", "legal", "finance", "release", "customer:acme", "research")
WORDS = ("the user prefers short answers about their project deadline and wants reminders before each meeting "
         "with the design team while travelling next week to berlin for the quarterly review budget approved "
         "pending legal sign off customer reported latency spikes after the last deploy").split()
STREAM_SHARE = 0.01


@dataclass(frozen=True)
class Row:
    partition: int
    ms: int
    version: int
    event: dict[str, Any]


@dataclass(frozen=True)
class Figures:
    events: int
    copy_s: float
    rebuild_s: float
    python_cpu_s: float = 0.0  # CPU of this process during the rebuild (all threads)
    postgres_cpu_s: float = 0.0  # CPU of the PostgreSQL backends serving it (same host only)
    limit_s: float = 0.0  # the bulk-load limit: read the history, COPY the final rows, build the indexes
    peak_rss_mb: float = 0.0  # peak resident memory of the process that ran the rebuild
    workers: int = 1  # processes the rebuild ran on

    @property
    def limit_rate(self) -> float:
        return self.events / self.limit_s if self.limit_s else 0.0

    @property
    def vs_limit(self) -> float:
        """The rebuild's rate as a share of the bulk-load limit's (1.0: as fast as a bulk load)."""
        return self.limit_s / self.rebuild_s if self.rebuild_s else 0.0

    @property
    def python_us_per_event(self) -> float:
        return 1e6 * self.python_cpu_s / self.events

    @property
    def copy_rate(self) -> float:
        return self.events / self.copy_s

    @property
    def rebuild_rate(self) -> float:
        return self.events / self.rebuild_s

    @property
    def cpu_ceiling(self) -> float:
        """The rate every core of this machine would reach at the CPU this rebuild spent per event."""
        spent = self.python_cpu_s + self.postgres_cpu_s
        return (os.cpu_count() or 1) * self.events / spent if spent else 0.0


def history(n: int, partitions: int, seed: int = 0) -> list[Row]:
    """`n` events of a seeded workload, as the ledger would hold them."""
    rng = random.Random(seed)
    agents = [(f"org-{o}", f"agent-{o}-{a}") for o in range(4) for a in range(6)]
    live: dict[int, list[str]] = {i: [] for i in range(len(agents))}
    versions: dict[str, int] = {}
    rows = []
    for i in range(n):
        a = rng.randrange(len(agents))
        org, agent = agents[a]
        kind, data, memory = _step(rng, live[a], i)
        versions[memory] = versions.get(memory, 0) + (0 if kind == "MemoryRecalled" else 1)
        event = {"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "type": kind,
                 "schema_version": 2 if kind == "MemoryStored" else 1, "org_id": org, "agent_id": agent,
                 "subject_id": memory, "occurred_at": EPOCH + timedelta(milliseconds=i), "causation_id": None,
                 "correlation_id": None, "idempotency_key": None, "actor": None, "data": data}
        rows.append(Row(partition_for(org, agent, partitions), EPOCH_MS + i, versions[memory], event))
    return rows


def _step(rng: random.Random, live: list[str], i: int) -> tuple[str, dict[str, Any], str]:
    r = rng.random()
    if r < 0.70 or not live:
        memory = f"mem-{i:08d}"
        live.append(memory)
        return "MemoryStored", {"content": " ".join(rng.choices(WORDS, k=rng.randint(12, 40))),
                                "memory_type": "note", "tags": rng.sample(TAGS, rng.randint(0, 4)),
                                "importance": round(rng.random(), 2),
                                "metadata": {"source": "chat", "turn": rng.randrange(500)}}, memory
    memory = rng.choice(live)
    if r < 0.82:
        return "MemoryUpdated", {"importance": round(rng.random(), 2)}, memory
    if r < 0.90:
        return "MemoryTagged", {"tags": rng.sample(TAGS, rng.randint(1, 3))}, memory
    if r < 0.96:
        return "MemoryRecalled", {"user_id": f"user-{rng.randrange(200)}", "query": "deadline"}, memory
    live.remove(memory)
    return "MemoryForgotten", {"reason": "outdated"}, memory


def load(settings: Settings, rows: Sequence[Row]) -> float:
    """COPY the archived part into event_archive (timed) and load the rest into the streams
    as it is (`EventLog.load`: given ids, no append checks); the COPY's seconds."""
    cut = int(len(rows) * (1 - STREAM_SHARE))
    with connection(settings) as conn:
        started = time.perf_counter()
        copy_rows(conn, ((r.event["event_id"], r.partition, r.ms, 0, r.event["org_id"], r.event["agent_id"],
                          r.event["subject_id"], r.version, r.event["type"], r.event["schema_version"],
                          r.event["occurred_at"], orjson.dumps(r.event).decode()) for r in rows[:cut]))
        conn.commit()
        seconds = time.perf_counter() - started
    streams: dict[int, list[tuple[str, int, bytes]]] = defaultdict(list)
    for r in rows[cut:]:
        streams[r.partition].append((f"{r.ms}-0", r.version, orjson.dumps(r.event)))
    log = open_log(settings)
    try:
        for partition, entries in streams.items():
            log.load(partition, entries)
    finally:
        log.close()
    return seconds


@contextmanager
def namespace(base: Settings) -> Iterator[Settings]:
    """A fresh namespace on the configured servers, every key and schema of it dropped afterwards."""
    settings = base.model_copy(update={"namespace": "rb" + uuid.uuid4().hex[:10]})
    try:
        yield settings
    finally:
        drop_namespace(settings)


def measure(base: Settings, events: int, batch: int = BATCH, workers: int = 0) -> Figures:
    """One size: generate, load, rebuild (`workers` processes; 0: as many as `memledger replay
    rebuild` would choose, replay.rebuild.auto_workers), then the bulk-load limit."""
    rows = history(events, base.partitions)
    with namespace(base) as settings:
        migrate.upgrade(settings)
        copy_s = load(settings, rows)
        del rows
        run = _rebuild_apart(settings, batch, workers)
        if run["applied"] != events:
            raise AssertionError(f"the rebuild applied {run['applied']} events, expected {events}")
        return Figures(events, copy_s, run["seconds"], run["python_s"], run["postgres_s"], bulk_limit(settings),
                       run["peak_rss_kb"] / 1024, int(run["workers"]))


def fixed_python_s(base: Settings) -> float:
    """Python CPU seconds of a rebuild with nothing to replay (planning, the shadow schema and its
    migrations, the index build, the swap): what a rebuild spends whatever its history's size."""
    with namespace(base) as settings:
        migrate.upgrade(settings)
        return _rebuild_apart(settings, BATCH, 1)["python_s"]


def _rebuild_apart(settings: Settings, batch: int, workers: int) -> dict[str, float]:
    """Run the rebuild in a spawned process (its own memory, nothing of the generated history)."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[dict[str, float] | str] = context.Queue()
    child = context.Process(target=_rebuild_child, args=(settings, batch, workers, results), name="rebuild-bench")
    child.start()
    try:
        out = results.get()
    finally:
        child.join()
    if isinstance(out, str):
        raise RuntimeError(f"the benchmarked rebuild failed: {out}")
    return out


def _rebuild_child(settings: Settings, batch: int, workers: int, results: multiprocessing.Queue[Any]) -> None:
    try:
        workers = workers or auto_workers(plan_rebuild(settings, "memories"))
        with CpuMeter(settings) as cpu, PeakRss() as rss:
            result = rebuild(settings, "memories", batch=batch, workers=workers)
        # Not ru_maxrss: Linux carries the parent's high-water mark across fork + exec into it,
        # so it would report the bench process (which held the generated history) instead.
        # The workers' figure (workers > 1) is an upper bound of that kind: at most this
        # process's size when they started, or their own peak.
        workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0.0
        results.put({"applied": result.applied, "seconds": result.seconds, "python_s": cpu.python_s,
                     "postgres_s": cpu.postgres_s, "peak_rss_kb": 1024 * max(rss.mb, workers_rss),
                     "workers": workers})
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(f"{type(e).__name__}: {e}")


def bulk_limit(settings: Settings) -> float:
    """Seconds of the bulk-load limit for the history in `settings`' archive, whose memories read
    model was just rebuilt: read every archived body, COPY the read model's final rows into
    index-free copies of its tables, build their indexes. The copies are dropped afterwards."""
    tables = MemoriesProjection.tables
    with connection(settings, autocommit=True) as conn:
        finals = {t: _copy_out(conn, t) for t in tables}  # not timed: the rows a rebuild arrives at
        started = time.perf_counter()
        with conn.transaction(), conn.cursor(name="bulk_limit_read") as cur:
            cur.itersize = BATCH
            cur.execute("SELECT stream_ms, stream_seq, subject_version, schema_version, body::text"
                        " FROM event_archive ORDER BY partition, stream_ms, stream_seq")
            while cur.fetchmany(BATCH):
                pass
        conn.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        try:
            for table, (columns, data) in finals.items():
                copy = f"bulk_limit_{table}"
                conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING DEFAULTS INCLUDING GENERATED)")
                for (definition,) in conn.execute(  # what fills derived columns (memories.search)
                        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                        " WHERE c.oid = to_regclass(%s) AND NOT t.tgisinternal", (table,)).fetchall():
                    conn.execute(re.sub(r" ON \S+ FOR EACH ", f" ON {copy} FOR EACH ", str(definition), count=1))
                with conn.cursor().copy(f"COPY {copy} ({columns}) FROM STDIN (FORMAT BINARY)") as stream:
                    stream.write(data)
                for (definition,) in conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                                                  " AND tablename = %s", (table,)).fetchall():
                    conn.execute(re.sub(r" INDEX \S+ ON \S+ ", f" INDEX ON {copy} ", str(definition), count=1))
            return time.perf_counter() - started
        finally:
            for table in tables:
                conn.execute(f"DROP TABLE IF EXISTS bulk_limit_{table}")


# Columns the database derives from others (by a trigger): the limit computes them too.
_DERIVED = {("memories", "search")}


def _copy_out(conn: Any, table: str) -> tuple[str, bytes]:
    """The table's own (not derived) columns, and its rows in COPY's binary format."""
    names = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s AND is_generated = 'NEVER' ORDER BY ordinal_position", (table,)).fetchall()
        if (table, r[0]) not in _DERIVED]
    columns = ", ".join(names)
    data = bytearray()
    with conn.cursor().copy(f"COPY {table} ({columns}) TO STDOUT (FORMAT BINARY)") as stream:
        for block in stream:
            data += block
    return columns, bytes(data)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--workers", type=int, default=0,
                        help="rebuild processes (default 0: as `memledger replay rebuild` chooses)")
    args = parser.parse_args(argv)
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{'events':>10} {'raw COPY ev/s':>14} {'rebuild s':>10} {'rebuild ev/s':>13} {'µs/event':>9} "
          f"{'vs COPY':>8} {'python CPU s':>13} {'postgres CPU s':>15} {'CPU ceiling ev/s':>17} "
          f"{'limit s':>8} {'vs limit':>9} {'peak RSS MB':>12} {'workers':>8}")
    for n in args.events:
        f = measure(Settings(), n, args.batch, args.workers)
        print(f"{f.events:>10,} {f.copy_rate:>14,.0f} {f.rebuild_s:>10.1f} {f.rebuild_rate:>13,.0f} "
              f"{1e6 * f.rebuild_s / f.events:>9.1f} {f.rebuild_rate / f.copy_rate:>8.2f} "
              f"{f.python_cpu_s:>13.1f} {f.postgres_cpu_s:>15.1f} {f.cpu_ceiling:>17,.0f} "
              f"{f.limit_s:>8.1f} {f.vs_limit:>9.2f} {f.peak_rss_mb:>12.0f} {f.workers:>8}", flush=True)


if __name__ == "__main__":
    main()
