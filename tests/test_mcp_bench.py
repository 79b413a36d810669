"""`memledger bench mcp` at a tiny size: every figure against its in-process twin, nothing left behind.

Speed itself is not asserted (DESIGN.md, Tests): only that each figure is measured against
its baseline, its target judged, and that the run's namespace is gone after it.
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
from memledger.bench import mcp_bench
from memledger.bench.http_env import child_env
from memledger.bench.sandbox import namespace_keys
from memledger.cli import app as cli


def test_a_tiny_run_measures_both_tool_calls_against_their_twins(
        settings: Settings, redis_client: redis.Redis, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in child_env(settings).items():
        if name.startswith("MEMLEDGER_"):
            monkeypatch.setenv(name, value)
    # When the CLI runs it
    result = CliRunner().invoke(cli, ["bench", "mcp", "--calls", "20", "--repeat", "1",
                                      "--json-file", str(tmp_path / "mcp.json")])
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "mcp.json").read_bytes())
    figures = {f["name"]: f for f in report["figures"]}
    # Then each tool call's p50 and p99 is a finite ratio to its in-process twin, p50 judged against 5 ms
    for remote, local in ((mcp_bench.MCP_STORE, mcp_bench.IN_STORE), (mcp_bench.MCP_GET, mcp_bench.IN_GET)):
        for pct in ("p50", "p99"):
            figure = figures[f"{remote} {pct}"]
            assert figure["baseline"] == f"{local} {pct}"
            assert math.isfinite(figure["ratio"]) and figure["value"] > 0
        assert figures[f"{remote} p50"]["passed"] in (True, False)
    assert "MCP store_memory" in result.output and report["args"]["calls"] == 20
    # And nothing of the run remains
    namespace = report["namespace"]
    assert namespace_keys(redis_client, namespace) == []
    with psycopg.connect(str(settings.database_url)) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (namespace,)).fetchone() is None
