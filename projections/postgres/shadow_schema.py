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
  replay is done (`finish_bulk`), before the catch-up and the swap, with a generous
  `maintenance_work_mem` set on that session alone (`INDEX_BUILD_MEMORY`).
- Digests are `digest.sum_digest`: order-independent, one scan in the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from ledger.connections import connect_redis
from ledger.errors import ConfigurationError, ProjectionError
from ledger.postgres import LOCK_TIMEOUT_MS, connect, translated
from ledger.settings import Settings

from ..shadow import Comparison, Snapshot
from . import checkpoint_table as checkpoints
from . import dead_letters, migrate
from .digest import primary_key, quote, sum_digest

if TYPE_CHECKING:
    from .base import PostgresProjection

__all__ = ["INDEX_BUILD_MEMORY", "PostgresShadow", "shadow_schema"]

DEFERRED = "replay_deferred_indexes"
# Memory for building the deferred indexes, set on the rebuild's own session only: an index
# sorted in memory is built in one pass instead of spilling runs to disk and merging them.
INDEX_BUILD_MEMORY = "512MB"
_SECONDARY = """
SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s AND t.relname = ANY(%s) AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid)
ORDER BY c.relname
"""


def _partitions(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                        " WHERE i.inhparent = to_regclass(%s)", (quote(schema, table),)).fetchall()
    return [str(r[0]) for r in rows]


def shadow_schema(settings: Settings, name: str, kind: str = "rebuild") -> str:
    """`<ns>_rebuild_<name>` (a rebuild's) or `<ns>_verify_<name>` (verify's own, so the two
    never share a shadow)."""
    return f"{settings.db_schema}_{kind}_{name}"


class PostgresShadow:
    """Shadow of a PostgresProjection class (see the module docstring)."""

    def __init__(self, settings: Settings, projection: type[PostgresProjection], kind: str = "rebuild"):
        self.settings, self.projection, self.name = settings, projection, projection.name
        self.live_schema, self.shadow = settings.db_schema, shadow_schema(settings, self.name, kind)
        self.shadow_label = f"schema {self.shadow}"
        self.tables, self.stream_only = projection.tables, projection.stream_only
        if not self.tables:
            raise ConfigurationError(f"projection {self.name!r} declares no tables; a rebuild would swap nothing")
        self.conn = connect(settings, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    # -- the shadow --------------------------------------------------------------------

    def shadow_exists(self) -> bool:
        with translated():
            return self.conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                     (self.shadow,)).fetchone() is not None

    def open_shadow(self) -> PostgresProjection:
        self.check_live_schema()
        # Runs for several partitions (processes or threads) may open the shadow at once;
        # creating and migrating it is serialised (Alembic's context is process-global too).
        self.conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"create:{self.shadow}",))
        try:
            if self.shadow_exists() and not self._complete():
                self.drop_shadow()  # creation was interrupted
            fresh = not self.shadow_exists()
            migrate.upgrade(self.settings, schema=self.shadow)
            if fresh and self.projection.defer_indexes:
                self._defer_indexes()
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"create:{self.shadow}",))
        projection = self.projection.open(self.settings, self.shadow)
        stored = projection.stored_version()
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
            self.conn.execute(f"CREATE TABLE {quote(self.shadow, DEFERRED)}"
                              " (name text PRIMARY KEY, definition text NOT NULL)")
            for name, definition in rows:
                self.conn.execute(f"INSERT INTO {quote(self.shadow, DEFERRED)} VALUES (%s, %s)", (name, definition))
                self.conn.execute(f"DROP INDEX {quote(self.shadow, name)}")

    def finish_bulk(self) -> None:
        """Build the deferred indexes (before the catch-up, so the swapped-in tables have them)."""
        deferred = quote(self.shadow, DEFERRED)
        if self.conn.execute("SELECT to_regclass(%s)", (deferred,)).fetchone() in (None, (None,)):
            return
        self.conn.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        for name, definition in self.conn.execute(f"SELECT name, definition FROM {deferred} ORDER BY name").fetchall():
            # A partitioned table's index is defined `ON ONLY` the parent: built as such it would
            # stay invalid, with no index on its partitions; built plainly it covers them all.
            statement = str(definition).replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
            self.conn.execute(statement.replace(" ON ONLY ", " ON ", 1))
            self.conn.execute(f"DELETE FROM {deferred} WHERE name = %s", (name,))
        self.conn.execute(f"DROP TABLE {deferred}")

    def _complete(self) -> bool:
        names = [f"{quote(self.shadow, t)}" for t in (*self.tables, "projection_checkpoints", "alembic_version")]
        row = self.conn.execute("SELECT bool_and(to_regclass(n) IS NOT NULL) FROM unnest(%s::text[]) n",
                                (names,)).fetchone()
        return bool(row and row[0])

    def drop_shadow(self) -> None:
        self.conn.execute(f"DROP SCHEMA IF EXISTS {quote(self.shadow)} CASCADE")

    def check_live_schema(self) -> None:
        """Refuse to build a shadow at a newer revision than the live schema (the swap would
        leave the live schema's alembic_version describing tables it no longer has)."""
        from alembic.script import ScriptDirectory  # late: alembic is slow to import

        heads = set(ScriptDirectory.from_config(migrate.alembic_config(self.settings)).get_heads())
        try:
            rows = self.conn.execute(f"SELECT version_num FROM {quote(self.live_schema, 'alembic_version')}").fetchall()
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
        return checkpoints.read(self.conn, self.name, self.shadow)

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
                checkpoints.lock_table(conn, self.live_schema, "SHARE")
                align(checkpoints.read(self.conn, self.name, self.live_schema))
            live = Snapshot(checkpoints.read(conn, self.name, self.live_schema), {})
            shadow = Snapshot(checkpoints.read(conn, self.name, self.shadow), {})
            if live.checkpoints != shadow.checkpoints:
                return Comparison(live, shadow)
            live, shadow = self._snapshot(conn, self.live_schema), self._snapshot(conn, self.shadow)
            differing = [t for t in self.tables if live.digest[t] != shadow.digest[t]]
            return Comparison(live, shadow, tuple(self._table_difference(conn, t, limit) for t in differing))

    @contextmanager
    def _consistent(self) -> Iterator[psycopg.Connection[Any]]:
        with connect(self.settings) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                yield conn

    def _snapshot(self, conn: psycopg.Connection[Any], schema: str) -> Snapshot:
        digest = {t: sum_digest(conn, schema, t) for t in self.tables}
        return Snapshot(checkpoints.read(conn, self.name, schema), digest)

    def _table_difference(self, conn: psycopg.Connection[Any], table: str, limit: int) -> str:
        live, shadow = quote(self.live_schema, table), quote(self.shadow, table)
        key = primary_key(conn, self.live_schema, table)
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
        with connect(self.settings) as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
            # Checkpoint writers wait from here on (plain reads, wait_for among them, pass):
            # no batch reaches the live tables between the last catch-up and the swap.
            self._lock(lambda: checkpoints.lock_table(conn, self.live_schema, "EXCLUSIVE"),
                       quote(self.live_schema, "projection_checkpoints"))
            catch_up()
            # Queries read the live tables until now; the swap itself takes milliseconds.
            for t in self.tables:
                table = quote(self.live_schema, t)
                self._lock(lambda: conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"), table)
            for t in self.tables:
                conn.execute(f"DROP TABLE {quote(self.live_schema, t)}")  # with its partitions, if any
                # SET SCHEMA moves a partitioned table alone: its partitions (the archive's
                # months) are moved one by one, or the shadow's DROP SCHEMA would take them.
                for part in _partitions(conn, self.shadow, t):
                    conn.execute(f"ALTER TABLE {quote(self.shadow, part)} SET SCHEMA {quote(self.live_schema)}")
                conn.execute(f"ALTER TABLE {quote(self.shadow, t)} SET SCHEMA {quote(self.live_schema)}")
            live = self._move_bookkeeping(conn)
            conn.execute(f"DROP SCHEMA {quote(self.shadow)} CASCADE")
            self._invalidate_query_cache()
        self._invalidate_query_cache()
        return live

    def _lock(self, lock: Callable[[], object], what: str) -> None:
        try:
            lock()
        except psycopg.errors.LockNotAvailable as e:
            raise ProjectionError(
                f"could not lock {what} within {LOCK_TIMEOUT_MS // 1000}s (a long query or "
                f"transaction?); run the rebuild again: it resumes from {self.shadow_label}") from e

    def _invalidate_query_cache(self) -> None:
        """Cached query results were computed from the tables being replaced. Bumped just
        before the commit and again after it: a result cached in between is dropped too."""
        from ..redis.cache import invalidate_all

        client = connect_redis(self.settings)
        try:
            invalidate_all(client, self.settings.namespace)
        finally:
            client.close()

    def _move_bookkeeping(self, conn: psycopg.Connection[Any]) -> dict[int, str]:
        live, shadow = self.live_schema, self.shadow
        conn.execute(f"DELETE FROM {quote(live, 'projection_versions')} WHERE projection = %s", (self.name,))
        conn.execute(f"INSERT INTO {quote(live, 'projection_versions')} (projection, version)"
                     f" SELECT projection, version FROM {quote(shadow, 'projection_versions')} WHERE projection = %s",
                     (self.name,))
        moved = checkpoints.replace(conn, self.name, live, shadow)
        dead_letters.resolve_passed(conn, self.name)  # search_path is the live schema
        return moved
