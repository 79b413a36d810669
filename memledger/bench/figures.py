"""What a measurement returns: figures with their units, targets and raw-limit baselines."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Direction", "Figure", "Target", "cpu_ceiling", "latency_figures", "percentile", "throughput"]

Direction = Literal["min", "max"]  # the target is a floor (higher is better) or a ceiling


@dataclass(frozen=True, slots=True)
class Target:
    """A goal such as `>= 0.6x raw XADD` or `p50 < 0.5 ms`.

    `on` says whether the goal applies to the figure's value or to its ratio against
    its raw limit.
    """

    text: str
    threshold: float
    direction: Direction
    on: Literal["value", "ratio"] = "value"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        """Whether the goal is met; None when the quantity it applies to is unknown."""
        subject = value if self.on == "value" else ratio
        if subject is None:
            return None
        return subject >= self.threshold if self.direction == "min" else subject <= self.threshold


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity: the median of `samples`, one per timed repetition."""

    name: str
    value: float
    unit: str
    group: str
    samples: tuple[float, ...] = ()
    target: Target | None = None
    baseline: str | None = None  # name of the raw-limit figure this one is a ratio against
    note: str = ""

    @property
    def spread(self) -> float | None:
        """Half the range of the samples, relative to the median: how noisy the figure is."""
        if len(self.samples) < 2 or not self.value:
            return None
        return (max(self.samples) - min(self.samples)) / 2 / self.value


def throughput(name: str, group: str, count: int, seconds: Sequence[float], unit: str = "events/s",
               target: Target | None = None, baseline: str | None = None, note: str = "") -> Figure:
    """A rate figure from the elapsed seconds of each repetition handling `count` items."""
    rates = tuple(count / s for s in seconds)
    return Figure(name, statistics.median(rates), unit, group, rates, target, baseline, note)


def cpu_ceiling(name: str, group: str, count: int, rounds: Sequence[tuple[float, float]], server: str,
                cores: int, target: Target | None = None) -> Figure:
    """The rate `cores` would reach at the CPU a figure's rounds spent per event, every core busy.

    Each round is (this process's CPU seconds, the server's CPU seconds) for `count`
    events. No overlap or parallelism lifts a rate above this ceiling on this machine;
    only spending less CPU per event does. The note splits the cost between the two.
    """
    ceilings = tuple(cores * count / (mine + theirs) for mine, theirs in rounds)
    mine = statistics.median(r[0] for r in rounds) / count * 1e6
    theirs = statistics.median(r[1] for r in rounds) / count * 1e6
    note = f"CPU per event: Python {mine:.1f} µs + {server} {theirs:.1f} µs, on {cores} cores"
    return Figure(f"{name}, CPU ceiling", statistics.median(ceilings), "events/s", group, ceilings, target, None, note)


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile of `values` (nearest rank, as latency reports use)."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def latency_figures(name: str, group: str, rounds: Sequence[Sequence[float]],
                    targets: Mapping[int, Target] | None = None, baseline: str | None = None) -> list[Figure]:
    """p50 and p99 figures (ms) from per-call seconds of each repetition: medians over repetitions."""
    figures = []
    for pct in (50, 99):
        per_round = tuple(percentile(calls, pct) * 1000 for calls in rounds)
        figures.append(Figure(
            f"{name} p{pct}", statistics.median(per_round), "ms", group, per_round,
            target=(targets or {}).get(pct), baseline=f"{baseline} p{pct}" if baseline else None))
    return figures
