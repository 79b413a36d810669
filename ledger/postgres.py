"""PostgreSQL access: the one place that opens connections and translates psycopg's errors.

Every module that talks to PostgreSQL gets its connection here (`connect`, `connection`)
and runs driver calls under `translated()`, so that a server that cannot be reached is a
`StoreUnavailable` (transient: the projector runtime retries it, the CLI exits with its
code) wherever it happens, and a namespace whose tables were never created says to run
`memledger migrate`. What stays a psycopg error on purpose: `DATA_ERRORS`, an event's data
that PostgreSQL refuses (a value it cannot store, a violated constraint). Those point at one
event, not at the system, and the projector runtime dead-letters them (see
`projections.runtime.POISON`); their class name is part of the dead letter's message.
"""

from __future__ import annotations

from ledger.errors import NotMigrated

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import tuple_row

from .errors import ConfigurationError, InvalidQuery, StoreUnavailable
from .settings import Settings

__all__ = ["DATA_ERRORS", "DRIVER_ERRORS", "LOCK_TIMEOUT_MS", "Connection", "Cursor", "NotMigrated",
           "advisory_locks", "connect", "connection", "is_migrated", "query_errors", "sync_commit", "translated"]

#: An open connection, as `connect` returns it. Modules that hand a connection on to an
#: adapter without running SQL themselves annotate with these names and import no driver.
Connection: TypeAlias = psycopg.Connection[Any]
#: A cursor of a `Connection` (a projection's `write` gets one inside its batch's transaction).
Cursor: TypeAlias = psycopg.Cursor[Any]

#: psycopg errors that mean "this event's data was refused", not "the store failed".
DATA_ERRORS: tuple[type[psycopg.Error], ...] = (psycopg.DataError, psycopg.IntegrityError)
#: Every error the driver raises: for a best-effort read that reports "unknown" instead of
#: failing its caller (an ingest's queue position), never for deciding what to retry.
DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.Error,)
#: How long a statement waits for a table lock before giving up (swaps, verify's alignment).
LOCK_TIMEOUT_MS = 10_000


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _not_migrated(what: str, e: BaseException) -> NotMigrated:
    return NotMigrated(f"{what}: {_first_line(e)}; the namespace's schema lacks a table (never migrated?): "
                       "run `memledger migrate`")


@contextmanager
def translated(what: str = "PostgreSQL") -> Iterator[None]:
    """Run driver calls, turning a lost or unreachable server into StoreUnavailable and a
    missing table into NotMigrated; every other error passes unchanged.

    `what` names the server or the operation in the message ("PostgreSQL (reading checkpoints)").
    """
    try:
        yield
    except psycopg.errors.UndefinedTable as e:
        raise _not_migrated(what, e) from e
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"{what} is unreachable or failed: {_first_line(e)}") from e


@contextmanager
def query_errors() -> Iterator[None]:
    """Translate what the driver raises while answering a query built from a caller's input:
    what PostgreSQL refuses of the input (a value it cannot take, a search too large to plan)
    is InvalidQuery; a failing server is StoreUnavailable; a missing table is NotMigrated."""
    try:
        yield
    except psycopg.errors.UndefinedTable as e:
        raise _not_migrated("PostgreSQL", e) from e
    except (psycopg.DataError, UnicodeEncodeError) as e:
        raise InvalidQuery(f"PostgreSQL refused the query's input ({_first_line(e)}); check its filters") from e
    except psycopg.OperationalError as e:
        if (e.sqlstate or "").startswith("54"):  # program limit exceeded: the input is too large to plan
            raise InvalidQuery(f"the query is too large for PostgreSQL ({_first_line(e)}); narrow it") from e
        raise StoreUnavailable(f"PostgreSQL failed to answer the query ({_first_line(e)}); retry") from e


def _url(source: Settings | str) -> str:
    if isinstance(source, str):
        return source
    from .connections import database_url

    return database_url(source)


#: The planner settings of a connection that answers analysts' queries (`connect(queries=True)`):
#:
#: - Plan each query with its own values. psycopg prepares a statement once it has run five
#:   times, and PostgreSQL may then keep one generic plan for every value: one chosen without
#:   knowing whether a tag or a word is rare, which walked every org's rows. Measured with the
#:   bench's workload on 1M memories (2026-12-04): the first 300 queries ran in 0.7 s, the next
#:   300, prepared, in 7.7 s, with a p99 of 130-180 ms against 12-25 ms.
#: - A random page read costs 1.1 sequential ones, not PostgreSQL's default 4.0, which models
#:   spinning disks; read models sit on SSDs or in memory. With 4.0 the planner intersected
#:   bitmaps of the GIN indexes (every org's rows) rather than walk one agent's rows in order
#:   and stop at the limit: p99 38 ms against 10 ms on the same table.
QUERY_PLANNING = ("plan_cache_mode=force_custom_plan", "random_page_cost=1.1")


def connect(source: Settings | str, schema: str | None = None, autocommit: bool = False,
            synchronous: bool | None = None, application_name: str | None = None,
            timeout_s: int | None = None, queries: bool = False) -> psycopg.Connection[Any]:
    """A connection to the configured database (`source`: settings or a libpq URL).

    Parameters:
        schema: the search_path: by default the namespace's schema given settings, none given a
            URL; "" for none.
        synchronous: False lets commits return before the WAL is flushed (see
            `PostgresProjection.durable_commit`), True forces a flush per commit, None keeps the
            server's setting.
        application_name: shown in pg_stat_activity (the benchmark's CPU meter finds backends by it).
        timeout_s: give up connecting after this many seconds (libpq's connect_timeout; default: wait).
        queries: the connection answers analysts' queries: plan them as `QUERY_PLANNING` says.
    """
    if schema is None and isinstance(source, Settings):
        schema = source.db_schema
    options = [f"-c search_path={schema}"] if schema else []
    if synchronous is not None:
        options.append(f"-c synchronous_commit={'on' if synchronous else 'off'}")
    if queries:
        options += [f"-c {setting}" for setting in QUERY_PLANNING]
    extra: dict[str, Any] = {} if application_name is None else {"application_name": application_name}
    if timeout_s is not None:
        extra["connect_timeout"] = timeout_s
    if options:
        extra["options"] = " ".join(options)
    try:
        return psycopg.connect(_url(source), autocommit=autocommit, **extra)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"PostgreSQL is unreachable: {e}") from e


@contextmanager
def connection(source: Settings | str, schema: str | None = None, autocommit: bool = False,
               synchronous: bool | None = None) -> Iterator[psycopg.Connection[Any]]:
    """`connect`, under `translated()`, closed when the block ends (after a commit, if it
    ends normally and the connection is not in autocommit mode)."""
    with connect(source, schema, autocommit, synchronous) as conn, translated():
        yield conn


def sync_commit(source: Settings | str) -> None:
    """Commit one transaction synchronously, which flushes the write-ahead log up to it:
    every commit seen before (asynchronous ones included) then survives a crash."""
    with connection(source, "", synchronous=True) as conn:
        conn.execute("SELECT pg_current_xact_id()")  # an xid, so COMMIT writes (and flushes) a record


def is_migrated(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether `schema` holds the migrations' bookkeeping table with a revision in it."""
    with translated(), conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".alembic_version',)).fetchone()
        if not row or not row[0]:
            return False
        count = cur.execute(f'SELECT count(*) FROM "{schema}".alembic_version').fetchone()
    return bool(count and count[0])


@contextmanager
def advisory_locks(source: Settings | str, keys: list[str]) -> Iterator[list[str]]:
    """PostgreSQL session locks on every key, held while the block runs. Yields the keys
    someone else holds (then none is taken). The server releases the locks when the
    session ends, so a SIGKILLed holder never leaves one behind."""
    with connect(source, autocommit=True) as conn:
        with translated():
            rows = conn.execute("SELECT k, pg_try_advisory_lock(hashtext(k)) FROM unnest(%s::text[]) k",
                                (keys,)).fetchall()
        taken, busy = [k for k, ok in rows if ok], [k for k, ok in rows if not ok]
        try:
            yield busy
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(hashtext(k)) FROM unnest(%s::text[]) k", (taken,))
