"""The bench's terminal table reads at 100 columns: one line per figure, grouped by area."""

from __future__ import annotations

from rich.console import Console

from memledger.bench.figures import Figure, Target
from memledger.bench.report import WIDTH, BenchReport, render_table, resolve

FIGURES = [
    Figure("raw XADD, pipelined", 54_321.5, "events/s", "raw limit", (50_000.0, 54_321.5, 58_000.0)),
    Figure("ledger append, batched, JSON", 19_876.0, "events/s", "ledger", (19_000.0, 19_876.0),
           Target(">= 0.35x raw XADD", 0.35, "min", on="ratio"), "raw XADD, pipelined", "a long note " * 20),
    Figure("projector recent_messages (whole process), CPU ceiling", 123_456.0, "events/s", "projections",
           (123_456.0,), Target(">= 40k events/s", 40_000, "min")),
    Figure("write-to-queryable lag p99", 48.25, "ms", "projections", (47.0, 49.5), Target("< 50 ms", 50, "max")),
    Figure("command: decide + encode", 7.25, "µs/event", "command path, CPU per event", (7.0, 7.5)),
]


def _render() -> list[str]:
    report = BenchReport(resolve(FIGURES), {"events": 20_000, "repeat": 3, "seed": 0}, {}, {}, "bench_x",
                         "2026-12-04T00:00:00+00:00", 12.0)
    console = Console(width=WIDTH, record=True, color_system=None)
    console.print(render_table(report))
    return console.export_text().splitlines()


def test_every_figure_is_one_line_within_100_columns() -> None:
    lines = _render()
    assert max(len(line) for line in lines) <= WIDTH
    for figure in FIGURES:
        # The name may wrap only if longer than its column; its value stays on its first line.
        first = [line for line in lines if figure.name[:40] in line]
        assert len(first) == 1, (figure.name, lines)


def test_figures_are_grouped_under_their_area_with_ratio_and_verdict() -> None:
    text = "\n".join(_render())
    for group in ("raw limit", "ledger", "projections", "command path, CPU per event"):
        assert group in text
    json_line = next(line for line in text.splitlines() if "batched, JSON" in line)
    assert "19.9k ev/s" in json_line and "0.37x" in json_line and "yes" in json_line
    lag_line = next(line for line in text.splitlines() if "lag p99" in line)
    assert "48.2 ms" in lag_line and "yes" in lag_line
    assert "a long note" not in text  # notes go to the JSON file


def test_only_selects_measurements_by_name_and_refuses_an_unknown_one() -> None:
    import pytest

    from memledger.bench.runner import select_measurements

    chosen = [m.name for m in select_measurements(["raw xadd, PIPE", "CPU by stage"])]
    assert chosen == ["raw XADD, pipelined", "command path, CPU by stage", "Redis projectors, CPU by stage"]
    with pytest.raises(ValueError, match="no measurement matches 'nothing'; they are: raw XADD"):
        select_measurements(["nothing"])


def test_the_cli_keeps_100_columns_when_its_output_is_piped() -> None:
    """Piped to a file or a CI log (80 columns is rich's guess there), rows still fit on one line."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from test_bench_report import FIGURES\n"
        "from memledger.bench.report import BenchReport, resolve\n"
        "from memledger.cli.bench import show\n"
        "show(BenchReport(resolve(FIGURES), {'events': 20_000, 'repeat': 3, 'seed': 0}, {}, {}, 'bench_x',\n"
        "                 '2026-12-04T00:00:00+00:00', 12.0), None)\n")
    out = _piped(script)
    lines = out.splitlines()
    assert max(len(line) for line in lines) > 80, out  # wider than the pipe's guess...
    assert max(len(line) for line in lines) <= WIDTH, out  # ...and within 100
    for figure in FIGURES:
        assert len([line for line in lines if figure.name[:40] in line]) == 1, (figure.name, out)


def test_the_scaling_table_is_not_cut_when_piped() -> None:
    """bench-scaling's table printed to a pipe: every column whole (it was cut to "rebui…", "1,000…")."""
    script = (
        "from memledger.cli.bench import scaling_table, wide\n"
        "row = {'events': 1_000_000, 'workers': 2, 'rebuild_s': 44.6, 'rebuild_rate': 22_444.0, 'limit_s': 23.2,\n"
        "       'vs_limit': 0.52, 'python_cpu_s': 39.8, 'postgres_cpu_s': 39.3, 'peak_rss_mb': 455.4}\n"
        "wide().print(scaling_table([row]))\n")
    out = _piped(script)
    assert "…" not in out, out
    assert "1,000,000" in out and "22,444" in out and "0.52x" in out, out
    assert max(len(line) for line in out.splitlines()) <= WIDTH


def _piped(script: str) -> str:
    """What `script` prints with its output piped (no terminal, no COLUMNS: rich guesses 80)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env).stdout
