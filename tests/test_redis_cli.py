"""The analysts' commands over the Redis read models: trending, analytics, feed (in-process CLI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from commands import CommandBus, RecordRecall, StoreMemory, TagMemory
from ledger import Settings, open_log
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from projections import run_projection
from projections.postgres import migrate

NOW = datetime.now(timezone.utc)


@pytest.fixture
def env(settings: Settings) -> Iterator[dict[str, str]]:
    migrate.upgrade(settings)
    bus = CommandBus(open_log(settings), None, clock=lambda: NOW)
    bus.send(StoreMemory(org_id="acme", agent_id="a1", memory_id="tea", content="likes green tea", tags=("food",),
                         metadata={"user_id": "u1"}))
    bus.send(StoreMemory(org_id="acme", agent_id="a2", memory_id="trip", content="flies to Lisbon", tags=("travel",)))
    bus.send(TagMemory(org_id="acme", agent_id="a2", memory_id="trip", tags=("food",)))
    for user in ("u2", "u3"):
        bus.send(RecordRecall(org_id="acme", agent_id="a1", memory_id="tea", user_id=user))
    for name in ("memories", "trending", "analytics", "activity"):
        run_projection(settings, name, until_caught_up=True)
    yield {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url), "COLUMNS": "200",
           "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_NAMESPACE": settings.namespace,
           "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1"}
    cli_settings.cache_clear()


def run(env: dict[str, str], *args: str, code: int = 0) -> str:
    cli_settings.cache_clear()
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def as_json(env: dict[str, str], *args: str) -> Any:
    return orjson.loads(run(env, *args, "--json"))


def test_trending(env: dict[str, str]) -> None:
    report = as_json(env, "trending", "--org", "acme", "--window", "2h", "--top", "1")
    assert report["tags"] == [{"tag": "food", "score": 4}]
    assert report["memories"] == [{"agent_id": "a1", "memory_id": "tea", "score": 2}]
    table = run(env, "trending", "--org", "acme", "--window", "1d")
    assert "Trending tags" in table and "travel" in table and "likes green tea" in table
    assert "not a window" in run(env, "trending", "--org", "acme", "--window", "soon", code=2)


def test_analytics(env: dict[str, str]) -> None:
    today = NOW.date()
    report = as_json(env, "analytics", "--org", "acme", "--from", str(today - timedelta(days=1)), "--to", str(today))
    assert [d["day"] for d in report["days"]] == [str(today - timedelta(days=1)), str(today)]
    assert report["days"][1]["events"] == {"MemoryRecalled": 2, "MemoryStored": 2, "MemoryTagged": 1}
    assert (report["agents"], report["users"]) == (2, 3)
    table = run(env, "analytics", "--org", "acme")
    assert "range" in table and "HyperLogLog" in table


def test_feed(env: dict[str, str]) -> None:
    entries = as_json(env, "feed", "--org", "acme", "--agent", "a2")
    assert [(e["type"], e["summary"]) for e in entries] == [("MemoryTagged", "+food"),
                                                             ("MemoryStored", "note: flies to Lisbon [travel]")]
    assert "Recent activity of acme/a1" in run(env, "feed", "--org", "acme", "--agent", "a1", "--limit", "1")
