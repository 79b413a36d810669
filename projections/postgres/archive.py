"""The event archive: every event, as stored, in PostgreSQL (the log's cold tier)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from ledger.events import RecordedEvent

from .base import PostgresProjection

_COPY = ("COPY event_archive (event_id, partition, stream_ms, stream_seq, org_id, agent_id, subject_id,"
         " subject_version, type, schema_version, occurred_at, body) FROM STDIN")


class ArchiveProjection(PostgresProjection):
    """Copies each event body unchanged (original schema version; upcast on read)."""

    name = "archive"
    version = 1
    tables = ("event_archive",)

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:
        with cur.copy(_COPY) as copy:
            for r in events:
                e, (ms, seq) = r.event, r.position.key
                copy.write_row((e.event_id, r.position.partition, ms, seq, e.org_id, e.agent_id, e.subject_id,
                                e.subject_version, e.type, r.stored_version, e.occurred_at, r.raw.decode()))

