"""What every PostgreSQL projection shares: connection, versions, checkpoint, dead letters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import psycopg

from ledger.errors import OutdatedReadModel, StoreUnavailable
from ledger.events import RecordedEvent

from ..base import FencedOut

_START = "0-0"  # the checkpoint of a partition nothing was applied of
# The checkpoint's compare-and-set, one statement per case. Only a batch read from the
# start may create the row: a missing row under any other `after` means the commit that
# created it was lost (an asynchronous commit, then a PostgreSQL crash), and creating it
# again at `to` would skip the lost batches for good, so that is a fence as well.
_CREATE = """
INSERT INTO projection_checkpoints (projection, partition, stream_id) VALUES (%(name)s, %(partition)s, %(to)s)
ON CONFLICT (projection, partition) DO UPDATE SET stream_id = EXCLUDED.stream_id, updated_at = now()
WHERE projection_checkpoints.stream_id = %(after)s
RETURNING 1
"""
_MOVE = """
UPDATE projection_checkpoints SET stream_id = %(to)s, updated_at = now()
WHERE projection = %(name)s AND partition = %(partition)s AND stream_id = %(after)s
RETURNING 1
"""


class CommitHook(Protocol):
    """Work tied to the commit of a batch (the query cache's invalidation: projections.redis.cache).

    `before_commit` runs inside the batch's transaction, after its rows are written (and
    its checkpoint row locked); raising rolls the batch back. `after_commit` runs once
    the transaction is over, committed or not (also when the batch was fenced out).
    """

    def before_commit(self, projection: object, partition: int, events: Sequence[RecordedEvent]) -> None: ...

    def after_commit(self, projection: object, partition: int, events: Sequence[RecordedEvent]) -> None: ...


def connect(conninfo: str, schema: str, autocommit: bool = False, synchronous: bool = True) -> psycopg.Connection:
    options = f"-c search_path={schema}" + ("" if synchronous else " -c synchronous_commit=off")
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, options=options)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"PostgreSQL is unreachable: {e}") from e


class PostgresProjection(ABC):
    """Base class: subclasses set `name`, `version` and implement `write(cur, events)`."""

    name: str = ""
    version: int = 1
    tables: tuple[str, ...] = ()  # the tables this projection owns (a rebuild swaps exactly these)
    # False lets a projection commit asynchronously (no fsync per batch): a PostgreSQL crash
    # may then lose its last few batches, rows and checkpoint together, and they are
    # re-applied from the ledger. Never for the archive: streams are trimmed below its
    # checkpoint, so a lost archive commit would lose events.
    durable_commit: bool = True

    def __init__(self, conninfo: str, schema: str):
        self.conninfo, self.schema = conninfo, schema
        self.commit_hooks: list[CommitHook] = []
        self.conn = connect(conninfo, schema, synchronous=self.durable_commit)
        self.prepare(self.conn)

    def prepare(self, conn: psycopg.Connection) -> None:
        """Per-connection set-up (temporary staging tables); runs after every (re)connect."""

    def reconnect(self) -> None:
        self.close()
        self.conn = connect(self.conninfo, self.schema, synchronous=self.durable_commit)
        self.prepare(self.conn)

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    def stored_version(self) -> int | None:
        with self.conn.transaction():
            row = self.conn.execute("SELECT version FROM projection_versions WHERE projection = %s",
                                    (self.name,)).fetchone()
        return None if row is None else int(row[0])

    def ensure_current(self) -> None:
        """Refuse a read model built by another projection version; claim an empty one."""
        stored = self.stored_version()
        if stored == self.version:
            return
        if stored is None and not self.checkpoints():
            with self.conn.transaction():
                self.conn.execute(
                    "INSERT INTO projection_versions (projection, version) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (self.name, self.version))
            return
        raise OutdatedReadModel(
            f"the {self.name!r} read model was built by projection version {stored}, this code is "
            f"version {self.version}; rebuild it with `memledger replay rebuild {self.name}`")

    def checkpoints(self) -> dict[int, str]:
        with self.conn.transaction():
            rows = self.conn.execute("SELECT partition, stream_id FROM projection_checkpoints WHERE projection = %s",
                                     (self.name,)).fetchall()
        return {int(p): str(s) for p, s in rows}

    def _advance(self, cur: psycopg.Cursor, partition: int, after: str, to: str) -> None:
        # First statement of the transaction: it locks the checkpoint row (or, for a row
        # being created, its key), so a second projector holding a stale lease waits here,
        # then finds `after` moved (or the row taken) and backs off.
        args = {"name": self.name, "partition": partition, "after": after, "to": to}
        if cur.execute(_CREATE if after == _START else _MOVE, args).fetchone() is None:
            raise FencedOut(f"{self.name} partition {partition} is not at {after} (moved past it, or the "
                            "commit that stored it was lost)")

    def apply(self, partition: int, events: Sequence[RecordedEvent], after: str) -> None:
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                self._advance(cur, partition, after, events[-1].position.stream_id)
                self.write(cur, events)
                for hook in self.commit_hooks:
                    hook.before_commit(self, partition, events)
        finally:
            for hook in self.commit_hooks:
                hook.after_commit(self, partition, events)

    @abstractmethod
    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:
        """Write the effects of `events` inside the caller's transaction."""

    def dead_letter(self, partition: int, stream_id: str, after: str, event_id: str | None,
                    event_type: str | None, error: str, attempts: int) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            self._advance(cur, partition, after, stream_id)
            cur.execute(
                "INSERT INTO dead_letters (projection, partition, stream_id, event_id, event_type, error, attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (self.name, partition, stream_id, event_id, event_type, error, attempts))
