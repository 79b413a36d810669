"""Shared set-up of the replay tests: a populated ledger and its projected read models."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
import psycopg

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.log import RedisEventLog
from projections import PROJECTIONS, run_projection
from projections.postgres import migrate

from workload import send_all, workload


def populate(settings: Settings, commands: int, seed: int = 1, project: bool = True) -> RedisEventLog:
    """Migrate, send a seeded workload and (by default) run every projection to the head."""
    migrate.upgrade(settings)
    bus = open_bus(settings)
    assert send_all(bus, workload(commands, seed=seed)) == commands
    if project:
        project_all(settings)
    return bus.log


def project_all(settings: Settings, names: tuple[str, ...] | None = None) -> None:
    """Run projectors until caught up: all registered ones (Redis read models too) by default."""
    for name in names or tuple(PROJECTIONS):
        run_projection(settings, name, until_caught_up=True)


def append_v1_memory(log: RedisEventLog, org: str, agent: str, memory_id: str, text: str, importance: int,
                     partition: int) -> str:
    """XADD a MemoryStored body in its old schema (v1: `text`, integer importance 0..10), as a
    ledger written before the v2 change would hold it. Returns its stream id."""
    body = {"event_id": str(uuid.uuid4()), "type": "MemoryStored", "schema_version": 1, "org_id": org,
            "agent_id": agent, "subject_id": memory_id, "occurred_at": datetime(2025, 6, 1, tzinfo=timezone.utc),
            "causation_id": None, "correlation_id": None, "idempotency_key": None, "actor": None,
            "data": {"text": text, "importance": importance, "tags": ["legacy"], "metadata": {}}}
    sid = log.client.xadd(log.keys.stream(partition), {"v": 1, "e": orjson.dumps(body)})
    return sid.decode() if isinstance(sid, bytes) else str(sid)


def sql(settings: Settings, query: str, *args: object, schema: str | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url(settings), autocommit=True,
                         options=f"-c search_path={schema or settings.db_schema}") as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "MEMLEDGER_REDIS_URL": str(settings.redis_url),
            "MEMLEDGER_DATABASE_URL": str(settings.database_url), "MEMLEDGER_NAMESPACE": settings.namespace,
            "MEMLEDGER_PARTITIONS": str(settings.partitions), "MEMLEDGER_ALLOW_VOLATILE": "1"}


def memledger(settings: Settings, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "memledger", *args], env=env(settings), **kw)


def open_ledger(settings: Settings) -> RedisEventLog:
    return open_log(settings)
