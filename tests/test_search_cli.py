"""`memledger search` and `memledger migrate` from the shell: with pgvector (the embedded
pgserver) and without it (the loopback PostgreSQL 15: one line each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from typer.testing import CliRunner, Result
from vector_server import pgvector_url, vector_settings  # noqa: F401 - fixtures

from commands import StoreMemory
from ledger import Settings
from memledger.app import App
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from projections import run_projection


def env_of(settings: Settings) -> dict[str, str]:
    return {"MEMLEDGER_REDIS_URL": settings.redis_url or "", "MEMLEDGER_DATABASE_URL": settings.database_url or "",
            "MEMLEDGER_NAMESPACE": settings.namespace, "MEMLEDGER_PARTITIONS": str(settings.partitions),
            "MEMLEDGER_ALLOW_VOLATILE": "1"}


def run(settings: Settings, *args: str) -> Result:
    cli_settings.cache_clear()  # the CLI caches its settings per process
    try:
        return CliRunner().invoke(app, list(args), env=env_of(settings))
    finally:
        cli_settings.cache_clear()


def test_without_pgvector_migrate_and_search_say_so_in_one_line(settings: Settings) -> None:
    migrated = run(settings, "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert "semantic search is unavailable" in migrated.output
    script = Path(sys.executable).with_name("memledger")  # the console script: its error handling
    searched = subprocess.run([str(script), "search", "--org", "acme", "where do I sit"], capture_output=True,
                              text=True, env={**os.environ, **env_of(settings)}, timeout=60)
    assert searched.returncode == 3 and searched.stdout == ""
    assert searched.stderr.startswith("error: semantic search is unavailable") and searched.stderr.count("\n") == 1


def test_search_json_shows_scores_and_signals(vector_settings: Settings) -> None:
    assert run(vector_settings, "migrate").exit_code == 0
    with App.open(vector_settings) as ledger:
        ledger.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m1", content="Maria books an aisle seat"))
        ledger.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="m2", content="Invoices are due on the 5th"))
    run_projection(vector_settings, "memories", until_caught_up=True)
    projected = run(vector_settings, "projector", "run", "-p", "embeddings", "--until-caught-up")
    assert projected.exit_code == 0, projected.output
    result = run(vector_settings, "search", "--org", "acme", "where does Maria sit on a plane", "--json", "-n", "1")
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.output)
    assert body["mode"] == "hybrid" and [h["memory_id"] for h in body["hits"]] == ["m1"]
    assert body["hits"][0]["vector_rank"] == 1 and body["hits"][0]["score"] > 0
    lag = run(vector_settings, "lag", "--json")  # the embeddings projector's own checkpoints and lag
    assert lag.exit_code == 0, lag.output
    rows = [r for r in orjson.loads(lag.output) if r["projection"] == "embeddings"]
    assert len(rows) == vector_settings.partitions and all(r["behind"] == 0 for r in rows)
