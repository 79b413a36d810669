"""The benchmark's result: figures with their ratios and verdicts, as a rich table or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import JustifyMethod
from rich.table import Table

from .figures import Figure

__all__ = ["BenchReport", "Result", "render_table", "resolve", "write_json"]


@dataclass(frozen=True, slots=True)
class Result:
    """A figure, its ratio to its raw limit (when it has one) and whether it met its target."""

    figure: Figure
    ratio: float | None
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.figure), "spread": self.figure.spread, "ratio": self.ratio, "passed": self.passed}


def resolve(figures: Sequence[Figure]) -> tuple[Result, ...]:
    """Ratios against each figure's baseline (found by name, same unit) and target verdicts."""
    by_name = {f.name: f for f in figures}
    results = []
    for figure in figures:
        base = by_name.get(figure.baseline) if figure.baseline else None
        ratio = figure.value / base.value if base and _comparable(base.unit, figure.unit) and base.value else None
        passed = figure.target.met(figure.value, ratio) if figure.target else None
        results.append(Result(figure, ratio, passed))
    return tuple(results)


def _comparable(a: str, b: str) -> bool:
    # Rates of items compare across item kinds: a projector's events/s against the COPY
    # of the rows those events become (rows/s).
    return a == b or (a.endswith("/s") and b.endswith("/s"))


@dataclass(frozen=True)
class BenchReport:
    results: tuple[Result, ...]
    args: dict[str, Any]
    machine: dict[str, Any]
    dataset: dict[str, Any]
    namespace: str
    started_at: str
    duration_s: float

    @property
    def figures(self) -> tuple[Figure, ...]:
        return tuple(r.figure for r in self.results)

    def result(self, name: str) -> Result:
        return next(r for r in self.results if r.figure.name == name)

    @property
    def failed(self) -> list[str]:
        return [r.figure.name for r in self.results if r.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {"figures": [r.to_dict() for r in self.results], "args": self.args, "machine": self.machine,
                "dataset": self.dataset, "namespace": self.namespace, "started_at": self.started_at,
                "duration_s": round(self.duration_s, 3), "failed": self.failed}


def write_json(report: BenchReport, path: Path) -> None:
    path.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def _value(figure: Figure) -> str:
    if figure.value >= 1000:
        return f"{figure.value:,.0f}"
    return f"{figure.value:.3f}" if figure.value < 10 else f"{figure.value:.1f}"


def _mark(passed: bool | None) -> str:
    return {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]–[/]"}[passed]


COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("figure", "left"), ("value", "right"), ("±", "right"), ("unit", "left"), ("target", "left"),
    ("ratio", "right"), ("raw limit", "left"), ("", "center"))


def _row(result: Result) -> list[str]:
    figure = result.figure
    return [figure.name, _value(figure), f"{figure.spread:.0%}" if figure.spread is not None else "", figure.unit,
            figure.target.text if figure.target else "", f"{result.ratio:.2f}x" if result.ratio is not None else "",
            figure.baseline or "", _mark(result.passed)]


def render_table(report: BenchReport) -> Table:
    """One row per figure: value, spread (± half range), unit, target, ratio to its raw limit, verdict."""
    args = report.args
    table = Table(title=f"memledger bench: {args['events']:,} events, median of {args['repeat']} "
                        f"(seed {args['seed']}, {report.duration_s:.0f}s)")
    for column, justify in COLUMNS:
        table.add_column(column, justify=justify)
    group = None
    for result in report.results:
        if group is not None and result.figure.group != group:
            table.add_section()
        group = result.figure.group
        table.add_row(*_row(result))
    return table
