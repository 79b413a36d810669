"""How cost grows with size: rebuild time and peak memory against history size, and uncached
query latency against table size.

Each history size gets a namespace of its own (see `rebuild_bench.measure`): a seeded history
is loaded into the archive with one COPY (timed), the memories read model is rebuilt from it
in a process of its own (its peak RSS is the rebuild's) and the bulk-load limit is measured
beside it. Rebuild time should grow linearly with history size and peak memory not at all.

Each table size gets a fresh memories table filled set-based (`projections_bench.fill_memories`)
and the bench's query workload run uncached against it (`MemoryStore.query`): the median
latency should stay flat as the table grows. Beside the times, the pages (8 kB buffers) each
query reads, from PostgreSQL's own count (EXPLAIN ANALYZE, BUFFERS): the work a query does
whatever the machine, and whether the answer comes from memory or the disk.

The chart: in the terminal as text (`text_chart`), and as a PNG when matplotlib is installed.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import Settings

from .projections_bench import fill_memories, query_workload
from .rebuild_bench import Figures, measure, namespace

if TYPE_CHECKING:
    from projections import MemoryQuery
    from projections.postgres.memory_store import MemoryStore

__all__ = ["LARGE_QUERY_SIZES", "LARGE_SIZES", "QUERY_SIZES", "SIZES", "QueryFigures", "as_json", "buffers", "chart",
           "explain", "measure_queries", "pages_line", "pages_read", "plan_buffers", "query_plan",
           "run_query_scaling", "run_scaling", "text_chart"]

SIZES = (10_000, 100_000)
LARGE_SIZES = (100_000, 300_000, 1_000_000)
QUERY_SIZES = (10_000, 100_000)
LARGE_QUERY_SIZES = (10_000, 100_000, 1_000_000)
QUERY_ROUNDS = 3


@dataclass(frozen=True)
class QueryFigures:
    rows: int
    p50_ms: float  # median over rounds of each round's p50
    p99_ms: float
    pages_p50: int = 0  # buffers read per query (shared hit + read), one pass
    pages_p99: int = 0
    # Of all the pages that pass read, the share PostgreSQL had to fetch from outside its buffer
    # cache (shared read): once the table outgrows `shared_buffers`, a page costs a system call.
    outside_cache: float = 0.0
    shared_buffers: str = ""


def run_scaling(settings: Settings, sizes: Sequence[int], workers: int = 0,
                progress: Callable[[int], None] | None = None,
                done: Callable[[Figures], None] | None = None) -> list[Figures]:
    """Rebuild figures per history size (each in a fresh namespace, removed afterwards);
    `progress(size)` before each, `done(figures)` after each."""
    out = []
    for n in sizes:
        if progress:
            progress(n)
        out.append(measure(settings, n, workers=workers))
        if done:
            done(out[-1])
    return out


def measure_queries(settings: Settings, rows: int, rounds: int = QUERY_ROUNDS, seed: int = 0) -> QueryFigures:
    """Uncached latency of the bench's query workload on a memories table of `rows` rows."""
    from ledger.connections import database_url
    from ledger.postgres import connect
    from projections.postgres import migrate
    from projections.postgres.memory_store import MemoryStore

    with namespace(settings.model_copy(update={"namespace": "qs" + uuid.uuid4().hex[:10]})) as ns:
        migrate.upgrade(ns)
        with connect(ns, autocommit=True) as conn:
            fill_memories(conn, ns.db_schema, rows)
        store = MemoryStore(database_url(ns), ns.db_schema)
        try:
            queries, p50s, p99s = query_workload(seed), [], []
            for q in queries[:20]:  # warm-up: plans and the buffer cache
                store.query(q)
            for _ in range(rounds):
                took = []
                for q in queries:
                    started = time.perf_counter()
                    store.query(q)
                    took.append(1000 * (time.perf_counter() - started))
                took.sort()
                p50s.append(took[len(took) // 2])
                p99s.append(took[min(len(took) - 1, int(len(took) * 0.99))])
            counts = [buffers(store, q) for q in queries]
            setting = store.conn.execute("SELECT current_setting('shared_buffers') AS size").fetchone()
            cache = str(setting["size"]) if setting else ""
        finally:
            store.close()
    pages = sorted(hit + read for hit, read in counts)
    outside = sum(read for _, read in counts) / max(1, sum(pages))
    return QueryFigures(rows, statistics.median(p50s), statistics.median(p99s),
                        pages[len(pages) // 2], pages[min(len(pages) - 1, int(len(pages) * 0.99))], outside, cache)


def explain(store: MemoryStore, statement: str, args: Sequence[Any], run: bool = False) -> dict[str, Any]:
    """PostgreSQL's plan of a statement on the store's connection (its top node, EXPLAIN's JSON);
    with `run`, the statement runs and the plan carries what it did (ANALYZE, BUFFERS)."""
    explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " if run else "EXPLAIN (FORMAT JSON) "
    [row] = store.conn.execute(explain + statement, args).fetchall()
    plan: dict[str, Any] = next(iter(row.values()))[0]["Plan"]
    return plan


def query_plan(store: MemoryStore, q: MemoryQuery, run: bool = False) -> dict[str, Any]:
    """The plan of one memories query (see `explain`)."""
    return explain(store, *q.sql(store.clock()), run=run)


def plan_buffers(plan: dict[str, Any]) -> tuple[int, int]:
    """The buffers (8 kB pages) a plan run with `explain(run=True)` read, as PostgreSQL counts
    them: found in its buffer cache, and fetched from outside it."""
    return int(plan.get("Shared Hit Blocks", 0)), int(plan.get("Shared Read Blocks", 0))


def buffers(store: MemoryStore, q: MemoryQuery) -> tuple[int, int]:
    """The buffers one memories query reads (it runs the query), as `plan_buffers`."""
    return plan_buffers(query_plan(store, q, run=True))


def pages_read(store: MemoryStore, q: MemoryQuery) -> int:
    """The buffers one query reads, wherever PostgreSQL found them."""
    return sum(buffers(store, q))


def run_query_scaling(settings: Settings, sizes: Sequence[int], progress: Callable[[int], None] | None = None,
                      done: Callable[[QueryFigures], None] | None = None) -> list[QueryFigures]:
    out = []
    for n in sizes:
        if progress:
            progress(n)
        out.append(measure_queries(settings, n))
        if done:
            done(out[-1])
    return out


def as_json(figures: Sequence[Figures], queries: Sequence[QueryFigures] = ()) -> dict[str, list[dict[str, Any]]]:
    return {
        "rebuild": [{"events": f.events, "copy_s": f.copy_s, "rebuild_s": f.rebuild_s, "copy_rate": f.copy_rate,
                     "rebuild_rate": f.rebuild_rate, "us_per_event": 1e6 * f.rebuild_s / f.events,
                     "python_cpu_s": f.python_cpu_s, "postgres_cpu_s": f.postgres_cpu_s,
                     "cpu_ceiling": f.cpu_ceiling, "limit_s": f.limit_s, "vs_limit": f.vs_limit,
                     "peak_rss_mb": f.peak_rss_mb, "workers": f.workers} for f in figures],
        "query": [{"rows": q.rows, "p50_ms": q.p50_ms, "p99_ms": q.p99_ms, "pages_p50": q.pages_p50,
                   "pages_p99": q.pages_p99, "outside_cache": q.outside_cache, "shared_buffers": q.shared_buffers}
                  for q in queries],
    }


def _bars(label: str, points: Sequence[tuple[int, float]], unit: str, width: int = 50) -> list[str]:
    top = max((v for _, v in points), default=0.0) or 1.0
    lines = [label]
    for size, value in points:
        bar = "█" * max(1, round(width * value / top)) if value > 0 else ""
        lines.append(f"  {size:>10,} │{bar:<{width}} {value:,.1f} {unit}")
    return lines


def pages_line(q: QueryFigures) -> str:
    return (f"pages per query: p50 {q.pages_p50:,}, p99 {q.pages_p99:,}; {q.outside_cache:.0%} from outside"
            f" the buffer cache ({q.shared_buffers})")


def text_chart(figures: Sequence[Figures], queries: Sequence[QueryFigures] = ()) -> str:
    """The chart for a terminal: one bar per size, for each quantity, with the ideal in words."""
    lines: list[str] = []
    if figures:
        first = figures[0]
        lines += _bars("rebuild seconds against history size (linear is ideal)",
                       [(f.events, f.rebuild_s) for f in figures], "s")
        lines += [f"  {f.events:>10,}   linear from the smallest: {first.rebuild_s * f.events / first.events:,.1f} s"
                  for f in figures[1:]]
        lines += _bars("peak RSS of the rebuild process against history size (flat is ideal)",
                       [(f.events, f.peak_rss_mb) for f in figures], "MB")
    if queries:
        lines += _bars("uncached query p50 against table size (flat is ideal)",
                       [(q.rows, q.p50_ms) for q in queries], "ms")
        lines += _bars("uncached query p99 against table size", [(q.rows, q.p99_ms) for q in queries], "ms")
        lines += [f"  {q.rows:>10,}   {pages_line(q)}" for q in queries]
    return "\n".join(lines)


def chart(figures: Sequence[Figures], path: Path, title: str, queries: Sequence[QueryFigures] = ()) -> None:
    """A PNG: rebuild time (with a linear reference) and peak RSS against history size, and
    query latency against table size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if queries else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    time_ax: Any = axes[0]
    rss_ax: Any = axes[1]
    sizes = [f.events for f in figures]
    first = figures[0]
    time_ax.loglog(sizes, [f.rebuild_s for f in figures], "o-", label="rebuild (memories)")
    time_ax.loglog(sizes, [first.rebuild_s * n / first.events for n in sizes], "--", color="grey",
                   label="linear from the smallest size")
    time_ax.loglog(sizes, [f.limit_s for f in figures], "s-", label="bulk-load limit")
    time_ax.set(xlabel="history size (events)", ylabel="seconds", title="Rebuild time")
    time_ax.legend()
    rss_ax.semilogx(sizes, [f.peak_rss_mb for f in figures], "o-", label="rebuild process peak RSS")
    rss_ax.set(xlabel="history size (events)", ylabel="MB", title="Rebuild peak memory", ylim=(0, None))
    rss_ax.legend()
    if queries:
        query_ax: Any = axes[2]
        rows = [q.rows for q in queries]
        query_ax.semilogx(rows, [q.p50_ms for q in queries], "o-", label="p50")
        query_ax.semilogx(rows, [q.p99_ms for q in queries], "s-", label="p99")
        query_ax.set(xlabel="memories in the table", ylabel="ms", title="Uncached query latency", ylim=(0, None))
        query_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
