"""Driver-level reads the App needs that no adapter offers yet. Each belongs in an adapter:

- `schema_migrated` (Alembic's version table)            -> the PostgreSQL owner (`ledger/`) or migrate
- `probe_redis`, `probe_postgres` (health round trips)   -> the connection owners (`ledger/connections.py`)
- `queue_position` (driver errors of `SessionQueue`)      -> `workers/ingest.py`

They live here so that no surface imports a driver, and so that moving them is a change of
import in `memledger/app.py` alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import redis
from psycopg.rows import tuple_row

from ledger import Receipt, Settings
from ledger.connections import database_url, redis_url
from ledger.errors import LedgerError

if TYPE_CHECKING:
    from workers.ingest import SessionQueue

__all__ = ["Probe", "probe_postgres", "probe_redis", "queue_position", "schema_migrated"]

#: Seconds a health probe waits for a server to accept a connection (and to answer).
PROBE_TIMEOUT_S = 3


@dataclass(frozen=True)
class Probe:
    """One server's answer to a health check."""

    name: str  # redis | postgresql
    ok: bool
    latency_ms: float | None  # one round trip, when it answered
    detail: str  # the server's version, or why it is not reachable


def schema_migrated(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether `memledger migrate` ever ran in `schema` (Alembic's version table exists and is set)."""
    cur = conn.cursor(row_factory=tuple_row)
    exists = cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".alembic_version',)).fetchone()
    if not exists or not exists[0]:
        return False
    version = cur.execute(f'SELECT count(*) FROM "{schema}".alembic_version').fetchone()
    return bool(version and version[0])


def probe_redis(settings: Settings) -> Probe:
    try:
        with redis.Redis.from_url(redis_url(settings), socket_connect_timeout=PROBE_TIMEOUT_S,
                                  socket_timeout=PROBE_TIMEOUT_S) as client:
            started = time.perf_counter()
            client.ping()
            latency = (time.perf_counter() - started) * 1000
            info: Any = client.info("server")
    except (redis.RedisError, OSError, LedgerError) as e:
        return Probe("redis", False, None, _first_line(e))
    return Probe("redis", True, round(latency, 3), f"Redis {info.get('redis_version', '?')}")


def probe_postgres(settings: Settings) -> tuple[Probe, bool | None]:
    """PostgreSQL's answer, and whether the namespace is migrated (None: unknown, not reachable)."""
    try:
        with psycopg.connect(database_url(settings), connect_timeout=PROBE_TIMEOUT_S, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            latency = (time.perf_counter() - started) * 1000
            migrated = schema_migrated(conn, settings.db_schema)
            version = conn.info.parameter_status("server_version") or "?"
    except (psycopg.Error, OSError, LedgerError) as e:
        return Probe("postgresql", False, None, _first_line(e)), None
    return Probe("postgresql", True, round(latency, 3), f"PostgreSQL {version}"), migrated


def queue_position(queue: SessionQueue, receipt: Receipt) -> int | None:
    """`SessionQueue.position`, or None when the read models cannot tell (a driver or domain error)."""
    try:
        return int(queue.position(receipt))
    except (psycopg.Error, redis.RedisError, LedgerError):
        return None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
