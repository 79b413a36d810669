"""The event archive: every event, as stored, in PostgreSQL (the log's cold tier).

The archive never skips an event. Rebuilds read history from it (`ledger.archive.read_from`)
and the stream is trimmed below its checkpoint, so an event it dead-lettered (checkpoint
moved past, no row) would vanish from every replay. An event it cannot store therefore
stops its projector before that event (`skips_poison = False`, honoured by the projector
runtime): its checkpoint only ever moves together with the rows of the events it passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import psycopg

from ledger.events import RecordedEvent

from .base import PostgresProjection

_COLUMNS = ("event_id, partition, stream_ms, stream_seq, org_id, agent_id, subject_id, subject_version, type,"
            " schema_version, occurred_at, body")
# One JSON array per batch, turned into rows by PostgreSQL: much cheaper than adapting
# each value in Python. Bodies are embedded unparsed (orjson.Fragment).
_INSERT = (f"INSERT INTO event_archive ({_COLUMNS}) SELECT {_COLUMNS}"
           " FROM jsonb_populate_recordset(NULL::event_archive, %s::jsonb)")


class ArchiveProjection(PostgresProjection):
    """Copies each event body unchanged (its original schema version; upcast on read)."""

    name = "archive"
    version = 1
    tables = ("event_archive",)
    skips_poison = False  # an event it cannot store stops the projector (module docstring)

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:
        cur.execute(_INSERT, (orjson.dumps([_row(r) for r in events]).decode(),))


def _row(r: RecordedEvent) -> dict[str, object]:
    e, (ms, seq) = r.event, r.position.key
    return {"event_id": e.event_id, "partition": r.position.partition, "stream_ms": ms, "stream_seq": seq,
            "org_id": e.org_id, "agent_id": e.agent_id, "subject_id": e.subject_id,
            "subject_version": e.subject_version, "type": e.type, "schema_version": r.stored_version,
            "occurred_at": e.occurred_at, "body": orjson.Fragment(r.raw)}
