"""The benchmark's result: figures with their ratios and verdicts, as a rich table or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from rich import box
from rich.console import JustifyMethod
from rich.table import Table

from .figures import Figure

__all__ = ["WIDTH", "BenchReport", "Result", "render_table", "resolve", "write_json"]


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


#: The terminal table's width: every row fits on one line of a 100-column terminal.
WIDTH = 100
#: The longest figure name shown whole; longer names wrap within the column.
NAME_WIDTH = 46
#: Units shortened in the table (the JSON file keeps the figure's own unit).
SHORT_UNITS = {"events/s": "ev/s", "requests/s": "req/s", "messages/s": "msg/s"}


def _number(value: float) -> str:
    if value >= 100_000:
        return f"{value / 1000:,.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _value(figure: Figure) -> str:
    """`15.3k ev/s ±4%`: the median, its unit and the spread of the repetitions."""
    spread = f" ±{figure.spread:.0%}" if figure.spread is not None else ""
    return f"{_number(figure.value)} {SHORT_UNITS.get(figure.unit, figure.unit)}{spread}"


def _mark(passed: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]-[/]"}[passed]


COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("figure", "left"), ("value", "right"), ("target", "left"), ("ratio", "right"), ("met", "center"))


def _row(result: Result) -> list[str]:
    figure = result.figure
    return [figure.name, _value(figure), figure.target.text if figure.target else "",
            f"{result.ratio:.2f}x" if result.ratio is not None else "", _mark(result.passed)]


def render_table(report: BenchReport) -> Table:
    """Figures grouped by area, one line each within 100 columns: value (± half the range of
    the repetitions), target, ratio to its raw limit, verdict. The raw limit each ratio is
    against, the notes and the samples are in the JSON file (`write_json`)."""
    args = report.args
    table = Table(title=f"memledger bench: {args['events']:,} events, median of {args['repeat']} "
                        f"(seed {args['seed']}, {report.duration_s:.0f}s)", box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in COLUMNS:
        table.add_column(column, justify=justify, no_wrap=column != "figure",
                         max_width=NAME_WIDTH if column == "figure" else None)
    groups: dict[str, list[Result]] = {}
    for result in report.results:
        groups.setdefault(result.figure.group, []).append(result)
    for index, (group, results) in enumerate(groups.items()):
        if index:
            table.add_section()
        table.add_row(f"[bold]{group}[/]", "", "", "", "")
        for result in results:
            table.add_row(*_row(result))
    return table
