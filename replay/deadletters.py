"""Dead letters: list them, and re-drive them into their projection.

A dead letter is an event a live projector could not apply; its checkpoint moved past it.
Re-driving applies that event now, after events that came later were applied, so it is
only safe when nothing it could be ordered against has been applied since. The choice:

- The event is read back from the log (archive, else stream) by its position; nothing is
  ever appended to the ledger.
- It is applied through the projection's own write path (`PostgresProjection.write`) in
  one transaction that also marks the letter `redriven_at`, so a letter takes effect at
  most once. The checkpoint does not move (it is already past the event).
- That transaction first locks the projection's checkpoint row for the partition, which
  holds the live projector of that partition off; then it refuses if any later event of
  the same subject (org and memory or session id) lies at or below the checkpoint, i.e.
  was already applied. Effects on different subjects commute in the current read models
  (per-subject rows; counters are sums, times are LEAST/GREATEST), so such a re-drive
  gives the state in-order application would have given. A refused letter stays open:
  fix the cause and run `memledger replay rebuild NAME`, which applies every event in
  order and marks the letters it got past as resolved.
- The archive's letters need no ordering check (the archive is a set of events).
- Only PostgreSQL projections are re-driven. Redis read models keep their dead letters
  beside their keys (listed here too); a rebuild clears them with the old generation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
import psycopg
from psycopg.rows import class_row

from ledger import Settings, open_log
from ledger.archive import event_at, stream_range
from ledger.connections import database_url
from ledger.errors import EventError, OutdatedReadModel
from ledger.events import RecordedEvent, stream_id_key
from ledger.log import RedisEventLog
from projections.postgres.archive import ArchiveProjection
from projections.postgres.base import PostgresProjection
from projections.redis.base import RedisProjection
from projections.registry import PROJECTIONS, open_projection
from projections.runtime import POISON

__all__ = ["DeadLetter", "RedriveOutcome", "list_dead_letters", "open_counts", "redrive"]

ORDER_SCAN_LIMIT = 200_000  # stream entries scanned for later events of a subject before refusing
_COLUMNS = "id, projection, partition, stream_id, event_id, event_type, error, attempts, failed_at, redriven_at"


@dataclass(frozen=True)
class DeadLetter:
    id: int | None  # None: kept by a Redis read model beside its keys (not re-drivable)
    projection: str
    partition: int
    stream_id: str
    event_id: str | None
    event_type: str | None
    error: str
    attempts: int
    failed_at: datetime | None
    redriven_at: datetime | None


@dataclass(frozen=True)
class RedriveOutcome:
    letter: DeadLetter
    outcome: Literal["redriven", "refused", "failed"]
    detail: str = ""


class _Refused(Exception):
    pass


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    return psycopg.connect(database_url(settings), autocommit=True, options=f"-c search_path={settings.db_schema}")


def list_dead_letters(settings: Settings, projection: str | None = None, include_resolved: bool = False,
                      ids: Iterable[int] | None = None) -> list[DeadLetter]:
    where, args = ["(%s::text IS NULL OR projection = %s)"], [projection, projection]  # type: list[str], list[Any]
    if not include_resolved:
        where.append("redriven_at IS NULL")
    if ids is not None:
        where.append("id = ANY(%s)")
        args.append(list(ids))
    with _connect(settings) as conn, conn.cursor(row_factory=class_row(DeadLetter)) as cur:
        rows = cur.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE {' AND '.join(where)}", args).fetchall()
    if ids is None:
        rows += _redis_letters(settings, projection)
    return sorted(rows, key=lambda d: (d.projection, d.partition, stream_id_key(d.stream_id)))


def _redis_letters(settings: Settings, only: str | None) -> list[DeadLetter]:
    out = []
    for name in [n for n in PROJECTIONS if only in (None, n)]:
        projection = open_projection(name, settings)
        try:
            if isinstance(projection, RedisProjection):
                out += [DeadLetter(None, name, int(d["partition"]), str(d["stream_id"]), d.get("event_id"),
                                   d.get("event_type"), str(d["error"]), int(d["attempts"]), None, None)
                        for d in projection.dead_letters()]
        finally:
            projection.close()
    return out


def open_counts(settings: Settings) -> dict[tuple[str, int], int]:
    with _connect(settings) as conn:
        rows = conn.execute("SELECT projection, partition, count(*) FROM dead_letters WHERE redriven_at IS NULL"
                            " GROUP BY projection, partition").fetchall()
    return {(str(name), int(p)): int(n) for name, p, n in rows}


def redrive(settings: Settings, projection: str | None = None,
            ids: Iterable[int] | None = None) -> list[RedriveOutcome]:
    """Re-apply open dead letters (all, one projection's, or the given ids), in log order."""
    letters = list_dead_letters(settings, projection, ids=ids)
    log, out = open_log(settings), []
    with _connect(settings) as reader:
        for name in dict.fromkeys(d.projection for d in letters):
            out += _redrive_projection(settings, log, reader, name, [d for d in letters if d.projection == name])
    return out


def _redrive_projection(settings: Settings, log: RedisEventLog, reader: psycopg.Connection[Any], name: str,
                        letters: list[DeadLetter]) -> list[RedriveOutcome]:
    projection = open_projection(name, settings)
    try:
        if not isinstance(projection, PostgresProjection):
            return [RedriveOutcome(d, "refused", f"{name} keeps its dead letters in Redis and is not re-driven "
                                                 f"event by event; rebuild it: `memledger replay rebuild {name}`")
                    for d in letters]
        try:
            projection.ensure_current()
        except OutdatedReadModel as e:
            return [RedriveOutcome(d, "refused", str(e)) for d in letters]
        return [_redrive_one(log, reader, projection, d) for d in letters]
    finally:
        projection.close()


def _redrive_one(log: RedisEventLog, reader: psycopg.Connection[Any], projection: PostgresProjection,
                 letter: DeadLetter) -> RedriveOutcome:
    try:
        r = event_at(reader, log, letter.partition, letter.stream_id)
    except EventError as e:
        return _failed(projection, letter, f"still undecodable: {e}")
    if r is None:
        return RedriveOutcome(letter, "refused", "the event is in neither the archive nor the stream any more")
    try:
        _apply(log, projection, letter, r)
    except _Refused as e:
        return RedriveOutcome(letter, "refused", str(e))
    except POISON as e:
        return _failed(projection, letter, f"{type(e).__name__}: {e}")
    return RedriveOutcome(letter, "redriven", f"{r.event.type} {r.event.subject_id}")


def _apply(log: RedisEventLog, projection: PostgresProjection, letter: DeadLetter, r: RecordedEvent) -> None:
    conn = projection.conn
    with conn.transaction(), conn.cursor() as cur:
        # Locking the checkpoint row holds the live projector of this partition off, so
        # the ordering check below stays true until we commit.
        row = cur.execute("SELECT stream_id FROM projection_checkpoints WHERE projection = %s AND partition = %s"
                          " FOR UPDATE", (projection.name, letter.partition)).fetchone()
        checkpoint = str(row[0]) if row else "0-0"
        if not isinstance(projection, ArchiveProjection):
            later = _later_applied(cur, log, r, checkpoint)
            if later is not None:
                raise _Refused(f"a later event of {r.event.subject_id} ({later}) was already applied; re-driving "
                               "this one would apply it out of order: run "
                               f"`memledger replay rebuild {projection.name}`")
        marked = cur.execute("UPDATE dead_letters SET redriven_at = now() WHERE id = %s AND redriven_at IS NULL"
                             " RETURNING 1", (letter.id,)).fetchone()
        if marked is None:
            raise _Refused("already re-driven by someone else")
        projection.write(cur, [r])


def _later_applied(cur: psycopg.Cursor[Any], log: RedisEventLog, r: RecordedEvent, checkpoint: str) -> str | None:
    """The position of a later event of the same subject at or below `checkpoint`, if any."""
    p, e = r.position.partition, r.event
    (ms, seq), (c_ms, c_seq) = r.position.key, stream_id_key(checkpoint)
    row = cur.execute(
        "SELECT stream_ms, stream_seq FROM event_archive WHERE org_id = %s AND subject_id = %s AND partition = %s"
        " AND (stream_ms, stream_seq) > (%s, %s) AND (stream_ms, stream_seq) <= (%s, %s) LIMIT 1",
        (e.org_id, e.subject_id, p, ms, seq, c_ms, c_seq)).fetchone()
    if row is not None:
        return f"{row[0]}-{row[1]}"
    last = cur.execute("SELECT stream_ms, stream_seq FROM event_archive WHERE partition = %s"
                       " ORDER BY stream_ms DESC, stream_seq DESC LIMIT 1", (p,)).fetchone()
    start = max(r.position.stream_id, f"{last[0]}-{last[1]}" if last else "0-0", key=stream_id_key)
    return _later_in_stream(log, p, start, checkpoint, e.org_id, e.subject_id)


def _later_in_stream(log: RedisEventLog, partition: int, after: str, until: str, org: str, subject: str) -> str | None:
    """Scan the stream tail the archive does not hold yet (normally short)."""
    scanned = 0
    while stream_id_key(after) < stream_id_key(until):
        entries = stream_range(log, partition, f"({after}", until, 1000)
        for sid, fields in entries:
            body = orjson.loads(fields.get(b"e", b"{}"))
            if body.get("org_id") == org and body.get("subject_id") == subject:
                return sid
        scanned += len(entries)
        if len(entries) < 1000:
            return None
        if scanned >= ORDER_SCAN_LIMIT:
            raise _Refused(f"the stream tail past the archive is over {ORDER_SCAN_LIMIT} events; cannot check the "
                           "order cheaply: let the archive projector catch up, or rebuild")
        after = entries[-1][0]
    return None


def _failed(projection: PostgresProjection, letter: DeadLetter, error: str) -> RedriveOutcome:
    with projection.conn.transaction():
        projection.conn.execute("UPDATE dead_letters SET error = %s, attempts = attempts + 1 WHERE id = %s",
                                (error, letter.id))
    return RedriveOutcome(letter, "failed", error)
