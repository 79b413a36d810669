"""The event archive: every event, as stored, in PostgreSQL (the log's cold tier).

The archive never skips an event. Rebuilds read history from it (`ledger.archive.read_from`)
and the stream is trimmed below its checkpoint, so an event it dead-lettered (checkpoint
moved past, no row) would vanish from every replay. An event it cannot store therefore
stops its projector before that event (`skips_poison = False`, honoured by the projector
runtime): its checkpoint only ever moves together with the rows of the events it passes.
The statements themselves live with the rest of the archive's, in `ledger.archive`.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from ledger import archive
from ledger.events import RecordedEvent

from .base import PostgresProjection


class ArchiveProjection(PostgresProjection):
    """Copies each event body unchanged (its original schema version; upcast on read)."""

    name = "archive"
    version = 1
    tables = ("event_archive",)
    skips_poison = False  # an event it cannot store stops the projector (module docstring)
    stream_only = True  # it is the history other rebuilds read: it is rebuilt from the stream alone
    redrive_in_order = False  # a set of events: applying one late changes nothing else
    parallel_partitions = True  # rows of different partitions never meet

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:
        archive.insert(cur, events)
