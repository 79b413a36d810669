"""Health probes: one round trip to each server, for `memledger health` (and later HTTP's).

A probe never raises for a server that is down or misconfigured: it reports `ok=False` and
why, in the words of the driver (the first line of its message). PostgreSQL is reached
through `ledger.postgres`, the one module that opens its connections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from .connections import redis_from_url, redis_url
from .errors import LedgerError, StoreUnavailable
from .postgres import DRIVER_ERRORS, connect, is_migrated
from .settings import Settings

__all__ = ["PROBE_TIMEOUT_S", "Probe", "probe_postgres", "probe_redis"]

#: Seconds a health probe waits for a server to accept a connection (and, for Redis, to answer).
PROBE_TIMEOUT_S = 3
#: What a PostgreSQL probe reports as "not ok" rather than raising.
_POSTGRES_DOWN: tuple[type[Exception], ...] = (*DRIVER_ERRORS, OSError, LedgerError)


@dataclass(frozen=True)
class Probe:
    """One server's answer to a health check."""

    name: str  # redis | postgresql
    ok: bool
    latency_ms: float | None  # one round trip, when it answered
    detail: str  # the server's version, or why it is not reachable


def probe_redis(settings: Settings) -> Probe:
    """Redis's answer to PING, timed, and its version."""
    try:
        with redis_from_url(redis_url(settings), socket_connect_timeout=PROBE_TIMEOUT_S,
                            socket_timeout=PROBE_TIMEOUT_S) as client:
            started = time.perf_counter()
            client.ping()
            latency = (time.perf_counter() - started) * 1000
            info: Any = client.info("server")
    except (redis.RedisError, OSError, LedgerError) as e:
        return Probe("redis", False, None, _first_line(e))
    return Probe("redis", True, round(latency, 3), f"Redis {info.get('redis_version', '?')}")


def probe_postgres(settings: Settings) -> tuple[Probe, bool | None]:
    """PostgreSQL's answer to one query, timed, and whether the namespace is migrated (None:
    unknown, PostgreSQL did not answer)."""
    try:
        with connect(settings, schema="", autocommit=True, timeout_s=PROBE_TIMEOUT_S) as conn:
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            latency = (time.perf_counter() - started) * 1000
            migrated = is_migrated(conn, settings.db_schema)
            version = conn.info.parameter_status("server_version") or "?"
    except _POSTGRES_DOWN as e:
        return Probe("postgresql", False, None, _first_line(_driver_cause(e))), None
    return Probe("postgresql", True, round(latency, 3), f"PostgreSQL {version}"), migrated


def _driver_cause(e: BaseException) -> BaseException:
    """The driver's own error behind a translated one: the probe's detail names the cause,
    and the probe's `ok=False` already says "unreachable"."""
    return e.__cause__ if isinstance(e, StoreUnavailable) and e.__cause__ is not None else e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
