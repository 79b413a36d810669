"""`memledger bench http` at a tiny size: every figure and its in-process twin, nothing left behind.

Speed itself is not asserted (DESIGN.md, Tests): only that each figure is measured against
its baseline, reported, and that the run's namespace and child processes are gone after it.
"""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import psycopg
import pytest
import redis
from typer.testing import CliRunner

from ledger import Settings
from memledger.bench import http_bench
from memledger.bench.sandbox import namespace_keys
from memledger.cli import app as cli
from memledger.bench.http_env import child_env


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("STORE_CALLS", 20), ("QUERY_CALLS", 10), ("SSE_CALLS", 10), ("REQUESTS", 1),
                        ("BATCH", 10)):
        monkeypatch.setattr(http_bench, name, value)


def test_a_tiny_run_measures_every_figure_against_its_twin(settings: Settings, redis_client: redis.Redis,
                                                            tiny: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in child_env(settings).items():
        if name.startswith("MEMLEDGER_"):
            monkeypatch.setenv(name, value)
    # When the CLI runs it
    result = CliRunner().invoke(cli, ["bench", "http", "--memories", "200", "--repeat", "1",
                                      "--json-file", str(tmp_path / "http.json")])
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "http.json").read_bytes())
    figures = {f["name"]: f for f in report["figures"]}
    # Then every HTTP figure is a finite ratio to its in-process twin, with its target judged
    pairs = {http_bench.HTTP_STORE: http_bench.IN_STORE, http_bench.HTTP_HIT: http_bench.IN_HIT,
             http_bench.HTTP_MISS: http_bench.IN_MISS, http_bench.SSE: http_bench.QUERYABLE,
             http_bench.PY_STORE: http_bench.IN_STORE, http_bench.PY_HIT: http_bench.IN_HIT}
    for remote, local in pairs.items():
        for pct in ("p50", "p99"):
            figure = figures[f"{remote} {pct}"]
            assert figure["baseline"] == f"{local} {pct}" and math.isfinite(figure["ratio"]) and figure["value"] > 0
    assert figures[http_bench.HTTP_BATCH]["baseline"] == http_bench.IN_BATCH
    assert figures[http_bench.HTTP_BATCH]["passed"] in (True, False)
    assert figures[f"{http_bench.SSE} p99"]["passed"] in (True, False)
    assert "HTTP store" in result.output and report["args"]["memories"] == 200
    # And nothing of the run remains
    namespace = report["namespace"]
    assert namespace_keys(redis_client, namespace) == []
    with psycopg.connect(str(settings.database_url)) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (namespace,)).fetchone() is None
