"""Progress while the benchmark runs: a rich display, or nothing (tests, scripts)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["Advance", "NullReporter", "Reporter", "RichReporter", "reporter"]

Advance = Callable[[str], None]  # one step done; the text says what comes next


class Reporter(Protocol):
    def task(self, label: str, total: int) -> Advance:
        """Start a task of `total` steps."""
        ...

    def measured(self, name: str) -> None:
        """A measurement has finished."""
        ...


class NullReporter:
    def task(self, label: str, total: int) -> Advance:
        return lambda note: None

    def measured(self, name: str) -> None:
        pass


class RichReporter:
    """One bar per repetition loop, under an overall bar of measurements."""

    def __init__(self, progress: Progress, measurements: int):
        self.progress = progress
        self.overall: TaskID = progress.add_task("benchmark", total=measurements, note="")

    def task(self, label: str, total: int) -> Advance:
        task = self.progress.add_task(f"  {label}", total=total, note="warm-up" if total > 1 else "")

        def advance(note: str) -> None:
            self.progress.update(task, advance=1, note=note)

        return advance

    def measured(self, name: str) -> None:
        self.progress.update(self.overall, advance=1, note=f"done: {name}")


@contextmanager
def reporter(enabled: bool, measurements: int, console: Console | None = None) -> Iterator[Reporter]:
    """A live rich display while the block runs, when `enabled`."""
    if not enabled:
        yield NullReporter()
        return
    columns = (SpinnerColumn(), TextColumn("{task.description:<34}"), BarColumn(bar_width=20),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("[dim]{task.fields[note]}"))
    with Progress(*columns, console=console or Console(stderr=True)) as progress:
        yield RichReporter(progress, measurements)
