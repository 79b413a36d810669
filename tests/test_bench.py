"""The benchmark at a tiny size against the loopback servers: figures, report, clean-up.

Speed itself is not asserted here (see DESIGN.md, Tests); only that every figure is
measured, related to its raw limit, reported, and that nothing of the run remains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import orjson
import psycopg
import pytest
import redis

from ledger import Settings
from ledger.codec import decode_body
from memledger.bench import BenchContext, Figure, Measurement, Target, build_dataset, run_benchmark, write_json
from memledger.bench.figures import cpu_ceiling
from memledger.bench.ledger_bench import LEDGER_APPEND, LEDGER_LATENCY
from memledger.bench.raw import RAW_XADD
from memledger.bench.runner import select_measurements
from memledger.bench.sandbox import namespace_keys
from memledger.cli.bench import bench as bench_command



def assert_removed(settings: Settings, client: redis.Redis, namespace: str) -> None:
    assert namespace_keys(client, namespace) == []
    with psycopg.connect(str(settings.database_url)) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (namespace,)).fetchone() is None


def test_tiny_run_measures_every_figure_and_leaves_nothing(settings: Settings, redis_client: redis.Redis,
                                                           tmp_path: Path) -> None:
    # When
    report = run_benchmark(settings, events=300, repeat=2, seed=7, progress=False)
    write_json(report, tmp_path / "bench.json")

    # Then every figure is a positive number with one sample per timed repetition
    assert report.namespace.startswith("bench_") and report.namespace != settings.namespace
    for figure in report.figures:
        assert math.isfinite(figure.value) and figure.value > 0, figure
        assert len(figure.samples) == 2, figure
    # ... figures with a raw limit have a ratio, and targets a verdict
    for result in report.results:
        if result.figure.baseline:
            assert result.ratio is not None and result.ratio > 0, result
        assert (result.passed is None) == (result.figure.target is None), result
    append = report.result(LEDGER_APPEND)
    assert append.figure.baseline == RAW_XADD
    assert append.ratio == pytest.approx(append.figure.value / report.result(RAW_XADD).figure.value)
    assert {f"{LEDGER_LATENCY} p50", f"{LEDGER_LATENCY} p99"} <= {f.name for f in report.figures}
    # ... the JSON has the figures, the machine and the arguments
    saved = orjson.loads((tmp_path / "bench.json").read_bytes())
    assert {"figures", "machine", "args", "dataset", "namespace", "started_at", "duration_s", "failed"} <= set(saved)
    assert {"cpu_count", "platform", "python", "redis_version", "postgres_version", "timestamp"} <= set(saved["machine"])
    assert saved["args"] == {"events": 300, "repeat": 2, "seed": 7, "partitions": settings.partitions, "query_rows": None}
    # ... every projector's throughput comes with the CPU it spent per event, as a ceiling
    names = {f.name for f in report.figures}
    for rate in ("projector memories", "replay rebuild memories", "projector trending (whole process)"):
        ceiling = report.result(f"{rate}, CPU ceiling").figure
        assert f"{rate}, CPU ceiling" in names and ceiling.unit == "events/s"
        assert ceiling.note.startswith("CPU per event: Python ") and " µs + " in ceiling.note, ceiling.note
    # ... the rebuild against its bulk-load limit, with its Python CPU per event against the live
    # projector's and its peak memory
    assert report.result("replay rebuild memories").figure.baseline == "bulk-load limit of memories"
    assert report.result("replay rebuild memories, Python CPU per event").ratio is not None
    assert report.result("replay rebuild memories, peak RSS").figure.unit == "MB"
    first = saved["figures"][0]
    assert {"name", "value", "unit", "target", "baseline", "ratio", "passed", "samples"} <= set(first)
    # ... and nothing of the run remains
    assert_removed(settings, redis_client, report.namespace)


def _failing(ctx: BenchContext) -> Sequence[Figure]:
    ctx.redis.set(f"{{{ctx.settings.namespace}:p0}}:left-behind", 1)
    ctx.pg.execute(f'CREATE TABLE "{ctx.schema}".left_behind (id int)')
    raise KeyboardInterrupt


def test_interrupted_run_still_removes_its_namespace(settings: Settings, redis_client: redis.Redis) -> None:
    namespace = "bench_t" + settings.namespace
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(settings, events=20, repeat=1, progress=False, namespace=namespace,
                      only=[Measurement("fails", _failing)])
    assert_removed(settings, redis_client, namespace)


def test_a_namespace_in_use_is_refused_and_left_alone(settings: Settings, redis_client: redis.Redis) -> None:
    from ledger.errors import ConfigurationError

    key = f"{{{settings.namespace}}}:meta"
    redis_client.set(key, "precious")
    with pytest.raises(ConfigurationError, match="already holds data"):
        run_benchmark(settings, events=20, repeat=1, progress=False, namespace=settings.namespace, only=[])
    assert redis_client.get(key) == b"precious"


def test_the_data_set_is_deterministic_and_encodes_its_commands() -> None:
    data = build_dataset(3, 400, 4)
    assert data.bodies == build_dataset(3, 400, 4).bodies
    assert data.bodies != build_dataset(4, 400, 4).bodies
    assert data.counts["StoreMemory"] > len(data) // 2 and len(data.counts) == 5
    event_types = {"StoreMemory": "MemoryStored", "UpdateMemory": "MemoryUpdated", "TagMemory": "MemoryTagged",
                   "RecordRecall": "MemoryRecalled", "ForgetMemory": "MemoryForgotten"}
    commands = data.commands("r000")
    for body, version, command in zip(data.bodies, data.versions, commands, strict=True):
        event = decode_body(body, version)
        assert event.type == event_types[command["type"]]
        assert (event.subject_id, event.org_id, event.agent_id) == (
            command["memory_id"], command["org_id"], command["agent_id"])
    assert all(99 <= len(c["content"]) <= 400 for c in commands if c["type"] == "StoreMemory")


def test_a_cpu_ceiling_is_what_every_core_could_do_at_the_measured_cost() -> None:
    # Given two rounds of 1,000 events: 60 ms + 40 ms, then 50 ms + 50 ms of CPU (client + server)
    figure = cpu_ceiling("p", "g", 1000, [(0.06, 0.04), (0.05, 0.05)], "PostgreSQL", cores=2)
    # Then 100 µs per event on 2 cores caps the rate at 20,000 events/s
    assert figure.name == "p, CPU ceiling" and figure.value == pytest.approx(20_000)
    assert figure.samples == pytest.approx((20_000, 20_000))
    assert figure.note == "CPU per event: Python 55.0 µs + PostgreSQL 45.0 µs, on 2 cores"


def test_targets_apply_to_the_value_or_the_ratio() -> None:
    assert Target("< 2 ms", 2.0, "max").met(1.5, None) is True
    assert Target(">= 0.6x", 0.6, "min", on="ratio").met(1000.0, 0.5) is False
    assert Target(">= 0.6x", 0.6, "min", on="ratio").met(1000.0, None) is None


def test_the_cli_command_prints_the_table_and_writes_json(settings: Settings, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from memledger.cli import common

    monkeypatch.setattr(common, "settings", lambda: settings)
    monkeypatch.setattr("memledger.cli.bench.settings", lambda: settings)
    app = typer.Typer()
    app.command()(bench_command)
    out = tmp_path / "b.json"
    result = CliRunner().invoke(app, ["--events", "60", "--repeat", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "raw XADD" in result.output and out.exists()


def test_the_rebuild_per_event_figure_leaves_out_what_a_rebuild_of_nothing_costs(
        settings: Settings, redis_client: redis.Redis) -> None:
    chosen = select_measurements(["replay rebuild", "projector memories", "PG COPY"])
    report = run_benchmark(settings, events=5_000, repeat=1, seed=7, progress=False, only=chosen)
    gross = report.result("replay rebuild memories, Python CPU per event").figure
    net = report.result("replay rebuild memories (replay only), Python CPU per event")
    # the target moves to the figure without the fixed cost, which is smaller by that cost
    assert gross.target is None and net.figure.target is not None and net.ratio is not None
    assert 0 < net.figure.value < gross.value
    fixed_ms = float(net.figure.note.split("(")[1].split(" ms")[0])
    assert net.figure.value == pytest.approx(gross.value - 1000 * fixed_ms / 5_000, rel=0.02, abs=1.0)
    assert_removed(settings, redis_client, report.namespace)
