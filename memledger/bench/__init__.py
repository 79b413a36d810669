"""The benchmark: raw server limits and the ledger's figures, measured in the same run.

Add a figure by registering a measurement in a module listed in `runner.MODULES`:

    @measurement("projection apply")
    def measure_projection(ctx: BenchContext) -> list[Figure]:
        seconds = ctx.rounds("projection apply", lambda round: ...)
        return [throughput("projection apply", "projection", len(ctx.data), seconds,
                           baseline=RAW_UPSERT)]
"""

from __future__ import annotations

from .data import DataSet, MemoryRow, build_dataset
from .figures import Figure, Target, latency_figures, percentile, throughput
from .registry import MEASUREMENTS, BenchContext, Measurement, Stopwatch, measurement
from .report import BenchReport, Result, render_table, write_json
from .runner import MODULES, measurements, run_benchmark

__all__ = ["MEASUREMENTS", "MODULES", "BenchContext", "BenchReport", "DataSet", "Figure", "Measurement",
           "MemoryRow", "Result", "Stopwatch", "Target", "build_dataset", "latency_figures", "measurement",
           "measurements", "percentile", "render_table", "run_benchmark", "throughput", "write_json"]
