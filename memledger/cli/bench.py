"""The operators' `memledger bench`: raw server limits and the ledger's figures, side by side."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from typing import Annotated

import orjson
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from memledger.bench import BenchReport, render_table, run_benchmark, write_json
from memledger.bench.report import WIDTH as REPORT_WIDTH
from memledger.bench.runner import select_measurements

from .common import console, settings


#: `--json` prints JSON on every read command; here the figures go to a file, so the flag is
#: `--json-file FILE` (the old `--json FILE` still works, hidden).
JsonFileOpt = Annotated[Path | None, typer.Option("--json-file", metavar="FILE",
                                                  help="Also write the figures as JSON.")]
OldJsonFileOpt = Annotated[Path | None, typer.Option("--json", metavar="FILE", hidden=True)]


def register(app: typer.Typer) -> None:
    """Add the `bench` (with its `bench http` and `bench mcp`) and `bench-scaling` commands to `app`."""
    benches = typer.Typer(invoke_without_command=True, add_completion=False)
    benches.callback()(bench)
    benches.command("http")(bench_http)
    benches.command("mcp")(bench_mcp)
    benches.command("messages")(bench_messages)
    benches.command("search")(bench_search)
    benches.command("projectors")(bench_projectors)
    benches.command("cluster")(bench_cluster)
    app.add_typer(benches, name="bench")
    app.command("bench-scaling")(bench_scaling)


def bench_search(
    memories: int = typer.Option(100_000, "--memories", min=1000, help="Memories search latency is measured on."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Timed runs per figure (medians)."),
    rate: float = typer.Option(50.0, "--rate", min=1.0, help="Stores per second for the lag figure."),
    lag_seconds: float = typer.Option(20.0, "--lag-seconds", min=1.0, help="How long the lag figure sends."),
    vectors_file: Path | None = typer.Option(None, "--vectors-file", help="Keep the corpus' vectors here "
                                                                           "(a second run skips the model)."),
    only_corpus: bool = typer.Option(False, "--only-corpus", help="Only the figures over --memories."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", min=2, help="HNSW m of the corpus' index."),
    hnsw_ef_construction: int = typer.Option(200, "--hnsw-ef-construction", min=4, help="Its ef_construction."),
    json_file: JsonFileOpt = None,
) -> None:
    """Semantic search: embeddings/s, recall on the retrieval set, write-to-searchable lag,
    search latency and HNSW recall@10 over --memories real-model vectors (needs pgvector)."""
    from memledger.bench.search_bench import run_search_bench

    with sigterm_interrupts():
        bench = run_search_bench(settings(), memories, repeat, rate, lag_seconds,
                                 lambda step: console.print(step, highlight=False), vectors_file, only_corpus,
                                 (hnsw_m, hnsw_ef_construction))
    console.print_json(orjson.dumps(bench.figures).decode())
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(bench.figures, option=orjson.OPT_INDENT_2))
        console.print(f"figures written to {json_file}")


ProjectionsOpt = Annotated[list[str] | None, typer.Option(
    "--projection", "-p", metavar="NAME",
    help="Projections to measure (repeatable or comma-separated; default: memories), e.g. "
         "-p trending,analytics,activity,recent_messages.")]


def bench_projectors(
    processes: str = typer.Option("1,2,4", "--processes", help="Process counts to compare, comma-separated."),
    events: int = typer.Option(40_000, "--events", min=1000, help="Commands in the backlog."),
    repeat: int = typer.Option(3, "--repeat", min=1,
                               help="Rounds per projection and process count (medians)."),
    projection: ProjectionsOpt = None,
    json_file: JsonFileOpt = None,
) -> None:
    """Projector throughput on 1, 2, 4 ... processes that split the partitions by lease, over one
    backlog, against the CPU ceiling (target >= 0.8x), in a namespace of its own (removed after)."""
    from memledger.bench.projector_processes import (
        as_json,
        processes_table,
        run_projector_processes,
    )
    from memledger.bench.sandbox import bench_settings, drop_namespace

    counts, names = _counts(processes), _projections(projection or [])
    sandbox = bench_settings(settings())
    try:
        with sigterm_interrupts():
            figures = run_projector_processes(
                sandbox, counts, events, repeat, projections=names,
                progress=lambda line: console.print(line, highlight=False, soft_wrap=True))
    finally:
        drop_namespace(sandbox)
    cores = os.cpu_count() or 1
    wide().print(processes_table(figures, sandbox.partitions, cores))
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(as_json(figures, cores), option=orjson.OPT_INDENT_2))
        console.print(f"figures written to {json_file}")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise typer.BadParameter(f"{text!r} is not a list of process counts such as 1,2,4", param_hint="--processes")
    return counts


def _projections(values: list[str]) -> list[str]:
    """The registered names in `values` (each may be comma-separated), in order, once each;
    memories if there are none."""
    from ledger.errors import ConfigurationError
    from projections.registry import projection_class

    parts = (part.strip() for value in values for part in value.split(","))
    names = list(dict.fromkeys(part for part in parts if part))
    try:
        return [projection_class(name).name for name in names or ["memories"]]
    except ConfigurationError as e:
        raise typer.BadParameter(str(e), param_hint="--projection") from None


def bench_http(
    memories: int = typer.Option(100_000, "--memories", min=100,
                                 help="Memories GET /v1/memories is measured on (the targets are stated at 100k)."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed repetitions per figure (medians; plus one warm-up)."),
    json_file: JsonFileOpt = None,
) -> None:
    """The HTTP API against the in-process path: store, batch, query and SSE figures, as ratios.

    Serves the API (`memledger serve`) and runs the memories projector in child processes,
    on a namespace of its own that is deleted at the end.
    """
    from memledger.bench.http_bench import run_http_benchmark

    with sigterm_interrupts():
        report = run_http_benchmark(settings(), memories=memories, repeat=repeat)
    show(report, json_file)


def bench_mcp(
    calls: int = typer.Option(500, "--calls", min=10, help="Tool calls per round of each figure."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed repetitions per figure (medians; one warm-up)."),
    json_file: JsonFileOpt = None,
) -> None:
    """MCP tool-call round trips over stdio (store_memory, get_memory), p50 and p99, against the App.

    Starts `memledger mcp` as a child process with an agent key of its own, on a namespace of
    its own that is deleted at the end.
    """
    from memledger.bench.mcp_bench import run_mcp_benchmark

    with sigterm_interrupts():
        report = run_mcp_benchmark(settings(), calls=calls, repeat=repeat)
    show(report, json_file)


def bench_messages(
    sessions: int = typer.Option(200, "--sessions", min=1, help="Conversations loaded for the read figures."),
    per_session: int = typer.Option(50, "--per-session", min=11, help="Messages in each of them."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed repetitions (medians, one warm-up)."),
    json_file: JsonFileOpt = None,
) -> None:
    """Working memory: append-message latency, recent messages from the cache and from PostgreSQL,
    and the recent-messages projector against raw pipelined Redis commands.

    Runs in process on a namespace of its own that is deleted at the end.
    """
    from memledger.bench.messages_bench import run_messages_benchmark

    with sigterm_interrupts():
        report = run_messages_benchmark(settings(), sessions, per_session, repeat)
    show(report, json_file)


def bench_scaling(
    large: bool = typer.Option(False, "--large", help="Histories of 100k, 300k and 1M events and tables of 10k, "
                                                      "100k and 1M memories (many minutes)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Rebuild processes (0: as `memledger replay rebuild` "
                                                            "chooses: one per core from 200k events)."),
    chart_file: Path | None = typer.Option(None, "--chart", metavar="PNG",
                                           help="Write the chart here too (needs matplotlib)."),
    json_file: JsonFileOpt = None,
    old_json_file: OldJsonFileOpt = None,
) -> None:
    """Rebuild time and peak memory against history size (10k, 100k; with --large 100k, 300k, 1M),
    and uncached query latency against table size (10k, 100k; with --large also 1M)."""
    from memledger.bench.rebuild_bench import Figures
    from memledger.bench.scaling import (
        LARGE_QUERY_SIZES,
        LARGE_SIZES,
        QUERY_SIZES,
        SIZES,
        QueryFigures,
        as_json,
        chart,
        pages_line,
        run_query_scaling,
        run_scaling,
        text_chart,
    )

    sizes, query_sizes = (LARGE_SIZES, LARGE_QUERY_SIZES) if large else (SIZES, QUERY_SIZES)
    out = wide()
    started = time.monotonic()

    def step(what: str) -> Callable[[int], None]:
        return lambda n: out.print(f"[{time.monotonic() - started:6.0f}s] {what} {n:,} "
                                       f"(load {os.getloadavg()[0]:.2f})")

    def rebuilt(f: Figures) -> None:
        out.print(f"         {f.events:,} events: rebuild {f.rebuild_s:.1f} s ({f.vs_limit:.2f}x the bulk-load "
                      f"limit's rate), peak RSS {f.peak_rss_mb:.0f} MB")

    def queried(q: QueryFigures) -> None:
        out.print(f"         {q.rows:,} rows: p50 {q.p50_ms:.2f} ms, p99 {q.p99_ms:.2f} ms")
        out.print(f"           {pages_line(q)}")

    with sigterm_interrupts():
        queries = run_query_scaling(settings(), query_sizes, step("querying a table of"), queried)
        figures = run_scaling(settings(), sizes, workers, step("rebuilding a history of"), rebuilt)
    rows = as_json(figures, queries)
    out.print(scaling_table(rows["rebuild"]))
    out.print(text_chart(figures, queries))
    if chart_file is not None:
        try:
            chart(figures, chart_file, f"memory-ledger scaling ({os.cpu_count()} cores)", queries)
            out.print(f"chart written to {chart_file}")
        except ImportError:
            out.print("matplotlib is not installed: the chart above is the text one (and the JSON)")
    if (path := json_file or old_json_file) is not None:
        path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


def scaling_table(rows: list[dict[str, float]]) -> Table:
    table = Table(title=f"rebuild of memories (peak MB: its peak RSS), load {os.getloadavg()[0]:.2f}",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    # Short headers, so that every column fits whole in 100 (rich shortens what does not fit)
    for column in ("events", "workers", "rebuild s", "events/s", "limit s", "vs limit", "Py µs/ev",
                   "PG µs/ev", "peak MB"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(f"{row['events']:,.0f}", f"{row.get('workers', 1):.0f}", f"{row['rebuild_s']:.1f}",
                      f"{row['rebuild_rate']:,.0f}",
                      f"{row['limit_s']:.1f}", f"{row['vs_limit']:.2f}x",
                      f"{1e6 * row['python_cpu_s'] / row['events']:.0f}",
                      f"{1e6 * row['postgres_cpu_s'] / row['events']:.0f}", f"{row['peak_rss_mb']:.0f}")
    return table


def bench(
    ctx: typer.Context,
    events: int = typer.Option(20_000, "--events", min=1, help="Commands in the data set."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed repetitions per figure (medians; plus one warm-up)."),
    json_file: JsonFileOpt = None,
    old_json_file: OldJsonFileOpt = None,
    seed: int = typer.Option(0, "--seed", help="Seed of the generated data set."),
    only: list[str] = typer.Option([], "--only", metavar="TEXT",
                                   help="Run only the measurements whose name contains TEXT (repeatable; "
                                        "name the raw limits a ratio needs too, e.g. --only 'raw XADD')."),
    query_rows: int | None = typer.Option(None, "--query-rows", min=1,
                                          help="Memories in the table the query latency is measured on "
                                               "(default 5x --events, at most 100k; the target is stated at 1M)."),
) -> None:
    """Measure append throughput and latency against raw XADD/XRANGE/COPY limits.

    Runs in a namespace of its own on the configured servers and deletes everything it
    wrote at the end (also on Ctrl-C). Against a Redis without AOF it needs
    MEMLEDGER_ALLOW_VOLATILE=1, like any other ledger writer. `memledger bench http` measures
    the HTTP API instead.
    """
    if ctx.invoked_subcommand is not None:
        return  # `bench http`: its own figures only
    try:
        chosen = select_measurements(only) if only else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--only") from None
    with sigterm_interrupts():
        report = run_benchmark(settings(), events=events, repeat=repeat, seed=seed, progress=True,
                               query_rows=query_rows, only=chosen)
    show(report, json_file or old_json_file)


def bench_cluster(
    writers: int = typer.Option(4, "--writers", min=1, help="Writer processes appending at once."),
    commands: int = typer.Option(5000, "--commands", min=1, help="Commands each writer appends per round."),
    batch: int = typer.Option(10, "--batch", min=1, help="Commands per append_many call."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Rounds per target (medians)."),
    json_file: JsonFileOpt = None,
) -> None:
    """Append throughput on a 3-master Redis Cluster against one Redis, both started here on
    loopback (redis-server and redis-cli from PATH, AOF on) and removed at the end."""
    from memledger.bench.cluster_bench import as_json, cluster_table, run_cluster_bench

    with sigterm_interrupts(), console.status("appending to one Redis and to a 3-master cluster"):
        figures = run_cluster_bench(writers, commands, batch, rounds)
    wide().print(cluster_table(figures))
    if json_file is not None:
        json_file.write_bytes(orjson.dumps(as_json(figures), option=orjson.OPT_INDENT_2))
        console.print(f"figures written to {json_file}")


def wide() -> Console:
    """Where the bench's tables and charts print: the terminal as it is or, piped to a file or a
    CI log (where rich assumes 80 columns, and print(width=) cannot widen a console), a console
    of 100 columns on the same output, so their rows are not cut or wrapped."""
    return console if console.is_terminal else Console(file=console.file, width=REPORT_WIDTH)


def show(report: BenchReport, json_file: Path | None) -> None:
    """The figures as a table, the targets missed, and the JSON file when one was asked for."""
    # Piped to a file or a CI log, rich assumes 80 columns (and print(width=) cannot widen a
    # console), so it would wrap rows the table fits in 100: print through one that has 100.
    out = wide()
    out.print(render_table(report))
    if report.failed:
        out.print(f"[red]targets missed:[/] {', '.join(report.failed)}")
    if json_file is not None:
        write_json(report, json_file)
        console.print(f"figures written to {json_file}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Treat SIGTERM (a CI timeout, `kill`) like Ctrl-C, so the bench namespace is still removed."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
