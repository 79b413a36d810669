"""PostgreSQL read models as rebuild targets: a shadow schema, swapped in by moving tables.

Choices, and why:

- The shadow of projection N in namespace schema S is the schema `S_rebuild_N`, migrated
  by the same Alembic revisions (`migrate.upgrade(settings, schema=shadow)`). Projections
  write unqualified tables, so the shadow projection is the ordinary projection class
  opened with `search_path` = the shadow. The shadow has its own `projection_checkpoints`
  and `projection_versions`: a rebuild resumes from them after a crash.
- The swap is one transaction on the live schema. It locks `projection_checkpoints` in
  EXCLUSIVE mode: plain reads pass, but every projector transaction starts by writing its
  checkpoint (and a re-drive by locking its row), so from then on no writer touches the
  live tables. With the live projector held off, the rebuild's final catch-up runs (on
  the shadow's own connection) while queries still read the old tables. Only then are the
  projection's tables locked (ACCESS EXCLUSIVE: this waits for running queries, and no
  writer can hold them, so no lock cycle is possible), each is dropped from the live
  schema and `ALTER TABLE shadow.t SET SCHEMA live` moves the rebuilt one in (its
  indexes, constraints and sequences move with it). The projection's rows in the live
  `projection_checkpoints` and `projection_versions` are replaced by the shadow's, open
  dead letters at or below the new checkpoints are marked resolved (`redriven_at`: the
  rebuild applied those events, fail-fast), and the shadow schema is dropped, all in the
  same commit. The Redis query cache is invalidated just before that commit and again
  after it (its entries were computed from the old tables). Queries read the old tables
  until that commit and the new ones after it; a live projector whose batch raced the
  swap is fenced out by its checkpoint compare-and-set and continues from the
  swapped-in checkpoint.
- The secondary indexes of a fresh shadow's tables are dropped and rebuilt once the bulk
  replay is done (`finish_bulk`), before the catch-up and the swap.
- Digests hash every row's text form (all columns in table order but the wall-clock ones,
  `projections.postgres.digest.VOLATILE`) with md5 and add up the first 60 bits:
  order-independent, one scan in the server, no sort of a large table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg

from ledger.connections import connect_redis, database_url
from ledger.errors import ConfigurationError, ProjectionError, StoreUnavailable
from ledger.settings import Settings
from projections.base import Projection
from projections.postgres.archive import ArchiveProjection
from projections.postgres.base import PostgresProjection
from projections.postgres.digest import VOLATILE
from projections.postgres.migrate import alembic_config, upgrade
from projections.redis.cache import invalidate_all
from projections.registry import open_projection

from .target import Comparison, Snapshot

__all__ = ["PostgresShadow", "advisory_locks", "shadow_schema"]

LOCK_TIMEOUT_MS = 10_000
DEFERRED = "replay_deferred_indexes"
_SECONDARY = """
SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s AND t.relname = ANY(%s) AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid)
ORDER BY c.relname
"""
_DIGEST = "SELECT count(*), coalesce(sum(('x' || substr(md5(ROW({})::text), 1, 15))::bit(60)::bigint), 0) FROM {} t"
_RESOLVE = """
UPDATE dead_letters d SET redriven_at = now() FROM projection_checkpoints c
WHERE d.projection = %(name)s AND d.redriven_at IS NULL AND c.projection = d.projection
  AND c.partition = d.partition
  AND (split_part(d.stream_id, '-', 1)::bigint, split_part(d.stream_id, '-', 2)::bigint)
   <= (split_part(c.stream_id, '-', 1)::bigint, split_part(c.stream_id, '-', 2)::bigint)
"""


def shadow_schema(settings: Settings, name: str, kind: str = "rebuild") -> str:
    """`<ns>_rebuild_<name>` (a rebuild's) or `<ns>_verify_<name>` (verify's own, so the two
    never share a shadow)."""
    return f"{settings.db_schema}_{kind}_{name}"


def _q(*parts: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


class PostgresShadow:
    """Rebuildable for a PostgresProjection (see the module docstring)."""

    stream_only: bool

    def __init__(self, settings: Settings, name: str, kind: str = "rebuild"):
        self.settings, self.name = settings, name
        self.live_schema, self.shadow = settings.db_schema, shadow_schema(settings, name, kind)
        self.shadow_label = f"schema {self.shadow}"
        live = open_projection(name, settings)
        try:
            if not isinstance(live, PostgresProjection):
                raise ConfigurationError(f"{name!r} is not a PostgreSQL projection")
            self.tables, self.version = live.tables, live.version
            self.stream_only = isinstance(live, ArchiveProjection)  # the archive can only come from the stream
            # A projection whose writes look rows up by a secondary index opts out with
            # `defer_indexes = False`; the current ones look up by primary key only.
            self.defer_indexes = bool(getattr(live, "defer_indexes", True))
        finally:
            live.close()
        if not self.tables:
            raise ConfigurationError(f"projection {name!r} declares no tables; a rebuild would swap nothing")
        self.conn = _connect(settings, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    # -- the shadow --------------------------------------------------------------------

    def shadow_exists(self) -> bool:
        return self.conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.shadow,)).fetchone() is not None

    def open_shadow(self) -> Projection:
        self.check_live_schema()
        # Runs for several partitions (processes or threads) may open the shadow at once;
        # creating and migrating it is serialised (Alembic's context is process-global too).
        self.conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"create:{self.shadow}",))
        try:
            if self.shadow_exists() and not self._complete():
                self.drop_shadow()  # creation was interrupted
            fresh = not self.shadow_exists()
            upgrade(self.settings, schema=self.shadow)
            if fresh and self.defer_indexes:
                self._defer_indexes()
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"create:{self.shadow}",))
        projection = open_projection(self.name, self.settings, target=self.shadow)
        stored = projection.stored_version() if isinstance(projection, PostgresProjection) else None
        if stored is not None and stored != projection.version:
            projection.close()  # built by other code: nothing to resume
            self.drop_shadow()
            return self.open_shadow()
        projection.ensure_current()
        return projection

    # -- deferred indexes --------------------------------------------------------------

    def _defer_indexes(self) -> None:
        """Drop the owned tables' secondary indexes from a fresh shadow, remembering them.

        Building an index once over the finished table is far cheaper than maintaining it
        row by row through the bulk replay (GIN indexes above all). Unique and constraint
        indexes stay: upserts need them. The definitions live in a logged table of the
        shadow, so a rebuild resumed after any crash still restores them.
        """
        with self.conn.transaction():
            rows = self.conn.execute(_SECONDARY, (self.shadow, list(self.tables))).fetchall()
            self.conn.execute(f"CREATE TABLE {_q(self.shadow, DEFERRED)}"
                              " (name text PRIMARY KEY, definition text NOT NULL)")
            for name, definition in rows:
                self.conn.execute(f"INSERT INTO {_q(self.shadow, DEFERRED)} VALUES (%s, %s)", (name, definition))
                self.conn.execute(f"DROP INDEX {_q(self.shadow, name)}")

    def finish_bulk(self) -> None:
        """Build the deferred indexes (before the catch-up, so the swapped-in tables have them)."""
        if self.conn.execute("SELECT to_regclass(%s)", (_q(self.shadow, DEFERRED),)).fetchone() in (None, (None,)):
            return
        for name, definition in self.conn.execute(f"SELECT name, definition FROM {_q(self.shadow, DEFERRED)}"
                                                  " ORDER BY name").fetchall():
            self.conn.execute(str(definition).replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))
            self.conn.execute(f"DELETE FROM {_q(self.shadow, DEFERRED)} WHERE name = %s", (name,))
        self.conn.execute(f"DROP TABLE {_q(self.shadow, DEFERRED)}")

    def _complete(self) -> bool:
        names = [f"{_q(self.shadow, t)}" for t in (*self.tables, "projection_checkpoints", "alembic_version")]
        row = self.conn.execute("SELECT bool_and(to_regclass(n) IS NOT NULL) FROM unnest(%s::text[]) n",
                                (names,)).fetchone()
        return bool(row and row[0])

    def drop_shadow(self) -> None:
        self.conn.execute(f"DROP SCHEMA IF EXISTS {_q(self.shadow)} CASCADE")

    def check_live_schema(self) -> None:
        """Refuse to build a shadow at a newer revision than the live schema (the swap would
        leave the live schema's alembic_version describing tables it no longer has)."""
        from alembic.script import ScriptDirectory  # late: alembic is slow to import

        heads = set(ScriptDirectory.from_config(alembic_config(self.settings)).get_heads())
        try:
            rows = self.conn.execute(f"SELECT version_num FROM {_q(self.live_schema, 'alembic_version')}").fetchall()
        except psycopg.errors.UndefinedTable:
            rows = []
        current = {r[0] for r in rows}
        if current != heads:
            raise ConfigurationError(
                f"schema {self.live_schema!r} is at revision {', '.join(sorted(current)) or 'none'}, the "
                f"migrations are at {', '.join(sorted(heads))}; run `memledger migrate` first")

    # -- digests -----------------------------------------------------------------------

    def shadow_checkpoints(self) -> Mapping[int, str]:
        if not self.shadow_exists() or not self._complete():
            return {}
        return _checkpoints(self.conn, self.shadow, self.name)

    def live_snapshot(self) -> Snapshot:
        with self._consistent() as conn:
            return self._snapshot(conn, self.live_schema)

    def shadow_snapshot(self) -> Snapshot:
        with self._consistent() as conn:
            return self._snapshot(conn, self.shadow)

    def compare(self, limit: int = 5, align: Callable[[Mapping[int, str]], object] | None = None) -> Comparison:
        # One REPEATABLE READ snapshot for both schemas: the live projector may move on,
        # but everything below is read as of one instant.
        with self._consistent() as conn:
            if align is not None:
                # LOCK takes no snapshot, so the snapshot (first SELECT below) sees what
                # `align` commits to the shadow while checkpoint writers wait on the lock.
                conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                conn.execute(f"LOCK TABLE {_q(self.live_schema, 'projection_checkpoints')} IN SHARE MODE")
                align(_checkpoints(self.conn, self.live_schema, self.name))
            live = Snapshot(_checkpoints(conn, self.live_schema, self.name), {})
            shadow = Snapshot(_checkpoints(conn, self.shadow, self.name), {})
            if live.checkpoints != shadow.checkpoints:
                return Comparison(live, shadow)
            live, shadow = self._snapshot(conn, self.live_schema), self._snapshot(conn, self.shadow)
            differing = [t for t in self.tables if live.digest[t] != shadow.digest[t]]
            return Comparison(live, shadow, tuple(self._table_difference(conn, t, limit) for t in differing))

    @contextmanager
    def _consistent(self) -> Iterator[psycopg.Connection[Any]]:
        with _connect(self.settings) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                yield conn

    def _snapshot(self, conn: psycopg.Connection[Any], schema: str) -> Snapshot:
        return Snapshot(_checkpoints(conn, schema, self.name), {t: _digest(conn, schema, t) for t in self.tables})

    def _table_difference(self, conn: psycopg.Connection[Any], table: str, limit: int) -> str:
        live, shadow = _q(self.live_schema, table), _q(self.shadow, table)
        key = _primary_key(conn, self.live_schema, table)
        parts = []
        for label, a, b in (("only in live", live, shadow), ("only in the rebuild", shadow, live)):
            count = conn.execute(f"SELECT count(*) FROM (TABLE {a} EXCEPT ALL TABLE {b}) x").fetchone()
            sample = conn.execute(
                f"SELECT DISTINCT {', '.join(key)} FROM (TABLE {a} EXCEPT ALL TABLE {b}) x ORDER BY 1 LIMIT {limit}"
            ).fetchall() if key else []
            keys = "; ".join("/".join(str(v) for v in row) for row in sample)
            parts.append(f"{count[0] if count else 0} rows {label}" + (f" (e.g. {keys})" if keys else ""))
        return f"{table}: " + ", ".join(parts)

    # -- the swap ----------------------------------------------------------------------

    def swap(self, catch_up: Callable[[], object]) -> Mapping[int, str]:
        with _connect(self.settings) as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
            # Checkpoint writers wait from here on (plain reads, wait_for among them, pass):
            # no batch reaches the live tables between the last catch-up and the swap.
            self._lock(conn, f"{_q(self.live_schema, 'projection_checkpoints')} IN EXCLUSIVE MODE")
            catch_up()
            # Queries read the live tables until now; the swap itself takes milliseconds.
            for t in self.tables:
                self._lock(conn, f"{_q(self.live_schema, t)} IN ACCESS EXCLUSIVE MODE")
            for t in self.tables:
                conn.execute(f"DROP TABLE {_q(self.live_schema, t)}")
                conn.execute(f"ALTER TABLE {_q(self.shadow, t)} SET SCHEMA {_q(self.live_schema)}")
            checkpoints = self._move_bookkeeping(conn)
            conn.execute(f"DROP SCHEMA {_q(self.shadow)} CASCADE")
            self._invalidate_query_cache()
        self._invalidate_query_cache()
        return checkpoints

    def _lock(self, conn: psycopg.Connection[Any], what: str) -> None:
        try:
            conn.execute(f"LOCK TABLE {what}")
        except psycopg.errors.LockNotAvailable as e:
            raise ProjectionError(
                f"could not lock {what.split(' IN ')[0]} within {LOCK_TIMEOUT_MS // 1000}s (a long query or "
                f"transaction?); run the rebuild again: it resumes from {self.shadow_label}") from e

    def _invalidate_query_cache(self) -> None:
        """Cached query results were computed from the tables being replaced. Bumped just
        before the commit and again after it: a result cached in between is dropped too."""
        client = connect_redis(self.settings)
        try:
            invalidate_all(client, self.settings.namespace)
        finally:
            client.close()

    def _move_bookkeeping(self, conn: psycopg.Connection[Any]) -> dict[int, str]:
        live, shadow, args = self.live_schema, self.shadow, {"name": self.name}
        for table, columns in (("projection_checkpoints", "projection, partition, stream_id"),
                               ("projection_versions", "projection, version")):
            conn.execute(f"DELETE FROM {_q(live, table)} WHERE projection = %(name)s", args)
            conn.execute(f"INSERT INTO {_q(live, table)} ({columns}) SELECT {columns} FROM {_q(shadow, table)}"
                         " WHERE projection = %(name)s", args)
        conn.execute(_RESOLVE, args)  # search_path is the live schema
        return _checkpoints(conn, live, self.name)


def _connect(settings: Settings, autocommit: bool = False) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(database_url(settings), autocommit=autocommit,
                               options=f"-c search_path={settings.db_schema}")
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"PostgreSQL is unreachable: {e}") from e


def _checkpoints(conn: psycopg.Connection[Any], schema: str, name: str) -> dict[int, str]:
    rows = conn.execute(f"SELECT partition, stream_id FROM {_q(schema, 'projection_checkpoints')}"
                        " WHERE projection = %s", (name,)).fetchall()
    return {int(p): str(s) for p, s in rows}


def _digest(conn: psycopg.Connection[Any], schema: str, table: str) -> str:
    columns = [_q(str(r[0])) for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (_q(schema, table),)).fetchall() if r[0] not in VOLATILE]
    row = conn.execute(_DIGEST.format(", ".join(f"t.{c}" for c in columns), _q(schema, table))).fetchone()
    return f"{row[0]}:{row[1]}" if row else "0:0"


def _primary_key(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        (_q(schema, table),)).fetchall()
    return [_q(str(r[0])) for r in rows]


@contextmanager
def advisory_locks(settings: Settings, keys: list[str]) -> Iterator[list[str]]:
    """PostgreSQL session locks on every key, held while the block runs. Yields the keys
    someone else holds (then none is taken). The server releases the locks when the
    session ends, so a SIGKILLed rebuild never leaves one behind."""
    with _connect(settings, autocommit=True) as conn:
        rows = conn.execute("SELECT k, pg_try_advisory_lock(hashtext(k)) FROM unnest(%s::text[]) k",
                            (keys,)).fetchall()
        taken, busy = [k for k, ok in rows if ok], [k for k, ok in rows if not ok]
        try:
            yield busy
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(hashtext(k)) FROM unnest(%s::text[]) k", (taken,))
