"""`memledger bench projectors` at a tiny size: N processes share the backlog, figures with their CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from ledger import Settings, open_log
from memledger.bench.projector_processes import as_json, empty_read_model, run_projector_processes
from memledger.bench.report import WIDTH
from memledger.cli import app
from projections.registry import PROJECTIONS, open_projection


def test_two_processes_project_the_whole_backlog_and_report_rate_and_cpu(settings: Settings) -> None:
    # When a 1,000-command backlog is projected by two processes sharing the partitions
    lines: list[str] = []
    [figure] = run_projector_processes(settings, [2], 1000, 1, progress=lines.append)
    # Then every event was projected (the bench waits for every head) and the round is reported with its CPU
    log = open_log(settings)
    assert figure.events == sum(log.client.xlen(log.keys.stream(p)) for p in range(settings.partitions)) >= 1000
    log.close()
    assert figure.projection == "memories" and figure.server == "postgres"
    assert figure.processes == 2 and len(figure.rates) == 1 and figure.median > 0
    assert figure.rates[0] == pytest.approx(figure.events / figure.rounds[0].seconds)
    python_us, postgres_us = figure.cpu_us()
    assert python_us > 0 and postgres_us > 0 and figure.ceiling(2) > 0
    assert len(lines) == 1 and "2 process(es)" in lines[0]
    # and against its raw limit, a COPY of the backlog's final rows measured in the same round
    assert figure.copy is not None and len(figure.copy.seconds) == 1 and 0 < figure.copy.rows < figure.events
    assert figure.vs_copy() == pytest.approx(figure.median / (figure.copy.rows / figure.copy.seconds[0]))
    saved = as_json([figure], 2)[0]
    assert saved["vs_copy"] == round(figure.vs_copy() or 0, 3) and saved["copy_rows"] == figure.copy.rows
    with psycopg.connect(str(settings.database_url)) as conn:  # the COPY's table is gone
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                            (f"{settings.db_schema}_copy",)).fetchone() is None


@pytest.mark.parametrize("bad", ["0", "1,x", ""])
def test_a_bad_process_list_is_one_clear_error(bad: str) -> None:
    result = CliRunner().invoke(app, ["bench", "projectors", "--processes", bad])
    assert result.exit_code == 2 and "--processes" in result.output and "process counts" in result.output


def test_a_redis_projection_on_one_then_two_processes_applies_every_event(
        settings: Settings) -> None:
    # When trending is measured on 1 then 2 processes over 2,000 commands (each round from empty)
    figures = run_projector_processes(settings, [1, 2], 2000, 1, projections=["trending"])
    # Then the last round left every partition's checkpoint at its head, and data in the model
    log = open_log(settings)
    heads = {p: h for p in range(settings.partitions) if (h := log.head(p))}
    log.close()
    trending = open_projection("trending", settings)
    try:
        assert trending.checkpoints() == heads and len(heads) == settings.partitions
        families = trending.digest()
        assert families and all(not digest.startswith("0:") for digest in families.values())
    finally:
        trending.close()
    # And each figure has its rate, the processes' and the Redis server's CPU, and its ratio
    assert [(f.projection, f.server, f.processes) for f in figures] == [
        ("trending", "redis", 1), ("trending", "redis", 2)]
    for figure in figures:
        python_us, redis_us = figure.cpu_us()
        assert figure.median > 0 and python_us > 0 and redis_us > 0
        assert figure.vs_ceiling(2) == pytest.approx(figure.median / figure.ceiling(2))


def test_a_redis_read_model_is_emptied_between_rounds(settings: Settings) -> None:
    # Given analytics projected over a backlog (one bench round)
    run_projector_processes(settings, [1], 1000, 1, projections=["analytics"])
    analytics = open_projection("analytics", settings)
    try:
        assert analytics.checkpoints()
        # When the next round starts, it empties the read model: no checkpoint, no key left
        empty_read_model(settings, "analytics")
        assert analytics.checkpoints() == {} and analytics.digest() == {}
    finally:
        analytics.close()


def test_the_table_states_the_ratio_to_the_cpu_ceiling_and_fits_100_columns_when_piped(
        settings: Settings, tmp_path: Path) -> None:
    # When the command runs for a Redis projection with its output piped (rich assumes 80 columns)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update({"MEMLEDGER_REDIS_URL": str(settings.redis_url),
                "MEMLEDGER_DATABASE_URL": str(settings.database_url),
                "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1"})
    figures = tmp_path / "figures.json"
    command = ["bench", "projectors", "-p", "activity", "--processes", "1,2", "--events", "1000",
               "--repeat", "1", "--json-file", str(figures)]
    out = subprocess.run([sys.executable, "-m", "memledger", *command], capture_output=True,
                         text=True, env=env, timeout=120, check=True).stdout
    # Then one line per process count, with the ratio column and the target, within 100 columns
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, out
    assert any("vs CPU ceiling" in line for line in lines) and ">= 0.8x" in out, out
    rows = [line.split() for line in lines if line.startswith("activity ")]
    assert [row[1] for row in rows] == ["1", "2"], out
    assert all(row[-1].endswith("x") for row in rows), out
    # And the JSON file holds each round's rate and load average, and the ratio
    written = orjson.loads(figures.read_bytes())
    assert [(f["projection"], f["server"], f["processes"]) for f in written] == [
        ("activity", "redis", 1), ("activity", "redis", 2)]
    for figure in written:
        assert len(figure["rounds_events_per_s"]) == len(figure["loadavg"]) == 1
        assert figure["vs_cpu_ceiling"] > 0


def test_an_unknown_projection_is_one_clear_error_naming_the_valid_ones() -> None:
    result = CliRunner().invoke(app, ["bench", "projectors", "-p", "trending,nope"])
    assert result.exit_code == 2 and "--projection" in result.output and "'nope'" in result.output
    assert all(name in result.output for name in PROJECTIONS), result.output
