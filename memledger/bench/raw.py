"""Raw limits of the servers, measured with the data set's own payloads in the same run.

They are what the ledger's figures are ratios against: pipelined XADD of the encoded
events (fields `v` and `e`, as the append script writes them) to as many streams as the
ledger has partitions, XRANGE read-back in pages of 1000, and PostgreSQL COPY and a
set-based upsert of the memories rows the data set folds to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from psycopg import sql

from ledger.connections import RedisClient
from ledger.partitions import Keys

from .figures import Figure, latency_figures, throughput
from .registry import BenchContext, Stopwatch, measurement

__all__ = ["RAW_COPY", "RAW_ROUND_TRIP", "RAW_UPSERT", "RAW_XADD", "RAW_XRANGE", "read_streams", "readback_keys"]

GROUP = "raw limit"
RAW_XADD = "raw XADD, pipelined"
RAW_ROUND_TRIP = "raw XADD round trip"
RAW_XRANGE = "raw XRANGE read"
RAW_COPY = "PG COPY"
RAW_UPSERT = "PG upsert (COPY + ON CONFLICT)"
PIPELINE = 500
PAGE = 1000
LATENCY_CALLS = 2000

COLUMNS = ("memory_id", "org_id", "agent_id", "content", "tags", "importance", "metadata",
           "created_at", "updated_at", "version")
TYPES = ("text", "text", "text", "text", "text[]", "float4", "jsonb", "timestamptz", "timestamptz", "int4")
TABLE_DDL = """
CREATE TABLE {table} (
    memory_id text PRIMARY KEY, org_id text NOT NULL, agent_id text NOT NULL, content text NOT NULL,
    tags text[] NOT NULL, importance real NOT NULL, metadata jsonb NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version int NOT NULL)
"""


def stream_keys(keys: Keys, partitions: Sequence[int]) -> list[str]:
    """The stream each event goes to, by its partition."""
    return [keys.stream(p) for p in partitions]


def xadd_pipelined(client: RedisClient, streams: Sequence[str], versions: Sequence[int],
                   bodies: Sequence[bytes]) -> None:
    """XADD every body, `PIPELINE` commands per round trip, as the ledger's batches are."""
    for start in range(0, len(bodies), PIPELINE):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + PIPELINE, len(bodies))):
                pipe.xadd(streams[i], {"v": versions[i], "e": bodies[i]})
            pipe.execute()


@measurement(RAW_XADD)
def measure_xadd(ctx: BenchContext) -> Sequence[Figure]:
    keys = Keys(f"{ctx.settings.namespace}:raw")
    data, streams = ctx.data, stream_keys(keys, ctx.data.partitions)

    def once(_: int) -> float:
        with Stopwatch() as watch:
            xadd_pipelined(ctx.redis, streams, data.versions, data.bodies)
        ctx.redis.delete(*set(streams))  # each round starts from empty streams, as the first did
        return watch.seconds

    seconds = ctx.rounds(RAW_XADD, once)
    return [throughput(RAW_XADD, GROUP, len(data), seconds, note=f"{PIPELINE} XADD per pipeline")]


@measurement(RAW_ROUND_TRIP)
def measure_round_trip(ctx: BenchContext) -> Sequence[Figure]:
    keys = Keys(f"{ctx.settings.namespace}:raw")
    data = ctx.data
    calls = min(LATENCY_CALLS, len(data))
    streams = stream_keys(keys, data.partitions[:calls])

    def once(_: int) -> list[float]:
        durations = []
        for i in range(calls):
            start = time.perf_counter()
            ctx.redis.xadd(streams[i], {"v": data.versions[i], "e": data.bodies[i]})
            durations.append(time.perf_counter() - start)
        ctx.redis.delete(*set(streams))
        return durations

    return latency_figures(RAW_ROUND_TRIP, GROUP, ctx.rounds(RAW_ROUND_TRIP, once))


def readback_keys(ctx: BenchContext) -> Keys:
    """Streams holding the data set once, in the ledger's layout; filled on first use."""
    keys = Keys(f"{ctx.settings.namespace}:read")
    if not ctx.shared.get("readback_filled"):
        data = ctx.data
        xadd_pipelined(ctx.redis, stream_keys(keys, data.partitions), data.versions, data.bodies)
        ctx.shared["readback_filled"] = True
    return keys


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_streams(client: RedisClient, keys: Keys, partitions: int) -> int:
    """XRANGE every partition's stream to its end in pages of `PAGE`; the entries read."""
    total = 0
    for partition in range(partitions):
        start = "-"
        while True:
            entries = client.xrange(keys.stream(partition), start, "+", count=PAGE) or []
            total += len(entries)
            if len(entries) < PAGE:
                break
            start = f"({_text(entries[-1][0])}"
    return total


@measurement(RAW_XRANGE)
def measure_xrange(ctx: BenchContext) -> Sequence[Figure]:
    keys = readback_keys(ctx)

    def once(_: int) -> float:
        with Stopwatch() as watch:
            read = read_streams(ctx.redis, keys, ctx.settings.partitions)
        if read != len(ctx.data):
            raise AssertionError(f"XRANGE read {read} entries, expected {len(ctx.data)}")
        return watch.seconds

    seconds = ctx.rounds(RAW_XRANGE, once)
    return [throughput(RAW_XRANGE, GROUP, len(ctx.data), seconds, note=f"pages of {PAGE}")]


def memories_table(ctx: BenchContext, name: str) -> sql.Identifier:
    """Create (once) a table shaped like a memories read model in the bench schema."""
    table = sql.Identifier(ctx.schema, name)
    if not ctx.shared.get(f"table:{name}"):
        ctx.pg.execute(sql.SQL(TABLE_DDL).format(table=table))
        ctx.shared[f"table:{name}"] = True
    return table


def copy_rows(ctx: BenchContext, table: sql.Composable, rows: Sequence[tuple[Any, ...]]) -> None:
    """Binary COPY of `rows` into `table`, the fastest way into PostgreSQL from a client."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
    with ctx.pg.cursor().copy(statement) as copy:
        copy.set_types(list(TYPES))
        for row in rows:
            copy.write_row(row)


@measurement(RAW_COPY)
def measure_copy(ctx: BenchContext) -> Sequence[Figure]:
    table = memories_table(ctx, "raw_copy")
    rows = [r.as_tuple() for r in ctx.data.rows]

    def once(_: int) -> float:
        ctx.pg.execute(sql.SQL("TRUNCATE {}").format(table))
        with Stopwatch() as watch, ctx.pg.transaction():
            copy_rows(ctx, table, rows)
        return watch.seconds

    seconds = ctx.rounds(RAW_COPY, once)
    return [throughput(RAW_COPY, GROUP, len(rows), seconds, unit="rows/s", note="binary COPY, one transaction")]


UPSERT = """
INSERT INTO {table} SELECT * FROM {staging}
ON CONFLICT (memory_id) DO UPDATE SET
    content = EXCLUDED.content, tags = EXCLUDED.tags, importance = EXCLUDED.importance,
    metadata = EXCLUDED.metadata, updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
WHERE {table}.version < EXCLUDED.version
"""


def upsert_rows(ctx: BenchContext, table: sql.Composable, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY into a temporary staging table, then one INSERT ... ON CONFLICT DO UPDATE."""
    staging = sql.Identifier("bench_staging")
    ctx.pg.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(staging, table))
    copy_rows(ctx, staging, rows)
    ctx.pg.execute(sql.SQL(UPSERT).format(table=table, staging=staging))


@measurement(RAW_UPSERT)
def measure_upsert(ctx: BenchContext) -> Sequence[Figure]:
    table = memories_table(ctx, "raw_upsert")
    rows = [r.as_tuple() for r in ctx.data.rows]
    initial = [r.as_tuple() for r in ctx.data.initial_rows]

    def once(_: int) -> float:
        # Memories that changed after being stored are already there, so their rows
        # take the DO UPDATE path and the rest are inserted, as in a live projection.
        ctx.pg.execute(sql.SQL("TRUNCATE {}").format(table))
        with ctx.pg.transaction():
            copy_rows(ctx, table, initial)
        with Stopwatch() as watch, ctx.pg.transaction():
            upsert_rows(ctx, table, rows)
        return watch.seconds

    seconds = ctx.rounds(RAW_UPSERT, once)
    note = f"{len(initial)} of {len(rows)} rows update"
    return [throughput(RAW_UPSERT, GROUP, len(rows), seconds, unit="rows/s", note=note)]
