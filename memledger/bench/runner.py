"""Running the benchmark: claim a namespace, build the data set, run every measurement, clean up."""

from __future__ import annotations

import gc
import importlib
import os
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from rich.console import Console

from ledger import Settings
from ledger.durability import read_persistence

from .data import DataSet, build_dataset
from .figures import Figure
from .progress import reporter
from .registry import MEASUREMENTS, BenchContext, Measurement
from .report import BenchReport, resolve
from .sandbox import Sandbox, bench_settings, open_sandbox

__all__ = ["MODULES", "measurements", "run_benchmark", "select_measurements"]

# Modules whose measurements the benchmark runs, in this order (raw limits first, since
# other figures are ratios against them). Later figures are added by appending here.
MODULES = ["memledger.bench.raw", "memledger.bench.ledger_bench", "memledger.bench.projections_bench",
           "memledger.bench.redis_models", "memledger.bench.stages"]


def measurements() -> list[Measurement]:
    """Every registered measurement, after importing the modules that register them."""
    for module in MODULES:
        importlib.import_module(module)
    return list(MEASUREMENTS)


def select_measurements(patterns: Sequence[str]) -> list[Measurement]:
    """The measurements whose name contains any of `patterns` (case-insensitive), in run order.

    A ratio needs its raw limit measured in the same run: name it too (e.g. "raw XADD").
    Raises ValueError naming the measurements when a pattern matches none.
    """
    every = measurements()
    for pattern in patterns:
        if not any(pattern.lower() in m.name.lower() for m in every):
            raise ValueError(f"no measurement matches {pattern!r}; they are: {', '.join(m.name for m in every)}")
    return [m for m in every if any(p.lower() in m.name.lower() for p in patterns)]


def run_benchmark(settings: Settings, events: int = 20_000, repeat: int = 5, seed: int = 0,
                  progress: bool = True, only: Sequence[Measurement] | None = None,
                  namespace: str | None = None, console: Console | None = None,
                  query_rows: int | None = None) -> BenchReport:
    """Measure raw limits and ledger figures on the configured servers, in a namespace of its own.

    Each figure is the median of `repeat` timed repetitions after one warm-up. The
    namespace (`namespace`, or a fresh `bench_<random>`) must be unused; its Redis keys
    and PostgreSQL schema are removed at the end, also on error or Ctrl-C.
    """
    if events < 1 or repeat < 1:
        raise ValueError("events and repeat must be at least 1")
    chosen = list(only) if only is not None else measurements()
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    config = bench_settings(settings, namespace)
    with open_sandbox(config) as sandbox, reporter(progress, len(chosen), console) as rep:
        advance = rep.task("building the data set", 1)
        data = build_dataset(seed, events, config.partitions)
        advance("done")
        ctx = BenchContext(config, sandbox.redis, sandbox.pg, sandbox.database_url, data, repeat, rep)
        ctx.shared["query_rows"] = query_rows
        figures = run_measurements(ctx, chosen)
        machine = machine_info(sandbox)
    args = {"events": events, "repeat": repeat, "seed": seed, "partitions": config.partitions,
            "query_rows": query_rows}
    return BenchReport(resolve(figures), args, machine, dataset_info(data), config.namespace,
                       started.isoformat(), time.perf_counter() - clock)


def run_measurements(ctx: BenchContext, chosen: Sequence[Measurement]) -> list[Figure]:
    """Every measurement's figures, in order."""
    # The data set is the bench's, not the ledger's: frozen out of the collector, it
    # neither slows the timed code's collections nor the collections between rounds.
    gc.collect()
    gc.freeze()
    try:
        figures: list[Figure] = []
        for m in chosen:
            figures += m.run(ctx)
            ctx.reporter.measured(m.name)
        return figures
    finally:
        gc.unfreeze()


def machine_info(sandbox: Sandbox) -> dict[str, Any]:
    """Where the figures were measured."""
    server = sandbox.redis.info("server")
    pg_version = sandbox.pg.execute("SHOW server_version").fetchone()
    return {
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(), "redis_version": server.get("redis_version"),
        "redis_persistence": read_persistence(sandbox.redis).describe(),
        "postgres_version": pg_version[0] if pg_version else None,
        "timestamp": datetime.now(timezone.utc).isoformat(),
    }


def dataset_info(data: DataSet) -> dict[str, Any]:
    return {"commands": len(data), "by_type": dict(data.counts), "rows": len(data.rows),
            "rows_preloaded_for_upsert": len(data.initial_rows),
            "mean_event_bytes": round(data.body_bytes / max(1, len(data)), 1)}
