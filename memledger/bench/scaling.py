"""How cost grows with history size: rebuild time and throughput at 10k, 100k (300k and 1M) events.

Each size gets a namespace of its own (see `rebuild_bench.measure`): a seeded history is
loaded into the archive with one COPY (the raw limit, timed) and the memories read model
is rebuilt from it. The chart shows rebuild time against size on log-log axes with the
line a perfectly linear cost would follow, and both rates against size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ledger import Settings

from .rebuild_bench import Figures, measure

SIZES = (10_000, 100_000)
LARGE_SIZES = (10_000, 100_000, 300_000, 1_000_000)


def run_scaling(settings: Settings, sizes: Sequence[int], workers: int = 1,
                progress: Callable[[int], None] | None = None) -> list[Figures]:
    """Rebuild figures per history size (each in a fresh namespace, removed afterwards)."""
    out = []
    for n in sizes:
        if progress:
            progress(n)
        out.append(measure(settings, n, workers=workers))
    return out


def as_json(figures: Sequence[Figures]) -> list[dict[str, float]]:
    return [{"events": f.events, "copy_s": f.copy_s, "rebuild_s": f.rebuild_s, "copy_rate": f.copy_rate,
             "rebuild_rate": f.rebuild_rate, "us_per_event": 1e6 * f.rebuild_s / f.events,
             "python_cpu_s": f.python_cpu_s, "postgres_cpu_s": f.postgres_cpu_s, "cpu_ceiling": f.cpu_ceiling}
            for f in figures]


def chart(figures: Sequence[Figures], path: Path, title: str) -> None:
    """A PNG: rebuild time against history size (with a linear reference), and rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [f.events for f in figures]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    first = figures[0]
    left.loglog(sizes, [f.rebuild_s for f in figures], "o-", label="rebuild (memories)")
    left.loglog(sizes, [first.rebuild_s * n / first.events for n in sizes], "--", color="grey",
                label="linear from the smallest size")
    left.loglog(sizes, [f.copy_s for f in figures], "s-", label="raw COPY of the same events")
    left.set(xlabel="history size (events)", ylabel="seconds", title="Time against history size")
    left.legend()
    right.semilogx(sizes, [f.rebuild_rate for f in figures], "o-", label="rebuild events/s")
    right.semilogx(sizes, [f.copy_rate for f in figures], "s-", label="raw COPY events/s")
    right.set(xlabel="history size (events)", ylabel="events per second", title="Throughput against history size",
              ylim=(0, None))
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
