"""The measurements the benchmark runs, and the context each receives.

A measurement is a function `(BenchContext) -> Sequence[Figure]`, registered with
`@measurement("name")`. It may create any Redis key under the bench namespace (a key
starting with `{<namespace>:`, e.g. from `Keys(ctx.settings.namespace)`) and any table
in `ctx.schema`; the runner deletes all of them at the end, whatever happens.
Measurements run in registration order, so a figure's raw limit is measured first.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from ledger.connections import RedisClient
from ledger import Settings

from .data import DataSet
from .figures import Figure
from .progress import Reporter

__all__ = ["MEASUREMENTS", "BenchContext", "Measurement", "MeasureFn", "Stopwatch", "measurement"]

T = TypeVar("T")


@dataclass
class BenchContext:
    """Everything a measurement needs, all scoped to the bench namespace."""

    settings: Settings  # namespace, partitions and rate limits of the bench run
    redis: RedisClient
    pg: psycopg.Connection[Any]  # autocommit; use `with ctx.pg.transaction()` for atomic work
    database_url: str
    data: DataSet
    repeat: int
    reporter: Reporter
    shared: dict[str, Any] = field(default_factory=dict)  # state measurements prepare for each other

    @property
    def schema(self) -> str:
        return self.settings.db_schema

    def rounds(self, label: str, once: Callable[[int], T]) -> list[T]:
        """Run `once(round)` for a warm-up round (0) and `repeat` timed rounds; the timed results.

        Garbage is collected between rounds, outside the timed code, so one round's
        leftovers do not land in the next one's figures.
        """
        advance = self.reporter.task(label, self.repeat + 1)
        results: list[T] = []
        for index in range(self.repeat + 1):
            gc.collect()
            result = once(index)
            if index:
                results.append(result)
            advance(f"round {index + 1}/{self.repeat}" if index < self.repeat else "done")
        return results


class Stopwatch:
    """Elapsed seconds of a block: `with Stopwatch() as sw: ...; sw.seconds`."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


MeasureFn = Callable[[BenchContext], Sequence[Figure]]


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    run: MeasureFn


MEASUREMENTS: list[Measurement] = []


def measurement(name: str) -> Callable[[MeasureFn], MeasureFn]:
    """Register a measurement; registering a name again replaces the earlier one."""

    def register(fn: MeasureFn) -> MeasureFn:
        entry = Measurement(name, fn)
        names = [m.name for m in MEASUREMENTS]
        if name in names:
            MEASUREMENTS[names.index(name)] = entry
        else:
            MEASUREMENTS.append(entry)
        return fn

    return register

