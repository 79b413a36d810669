"""What a dead-letter re-drive (replay/deadletters.py) reads from PostgreSQL, and where it notes a
failed attempt: the letter's event in the archive, later archived events of the same subject,
and the letter's `error`.

One autocommit connection serves a whole re-drive, so each look-up sees the latest commits
(the archive projector may be running meanwhile). The statements themselves are the archive's
(`ledger.archive`) and the dead-letter table's (`projections.postgres.dead_letters`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ledger import archive
from ledger.events import RecordedEvent
from ledger.log import RedisEventLog
from ledger.postgres import connection
from ledger.settings import Settings

from . import dead_letters

__all__ = ["RedriveReads", "open_redrive_reads"]


class RedriveReads:
    """The look-ups of one re-drive, on a connection the caller opened (`open_redrive_reads`)."""

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def event_at(self, log: RedisEventLog, partition: int, stream_id: str) -> RecordedEvent | None:
        """The event at a position: from the archive, else from the stream; None if neither holds it."""
        return archive.event_at(self.conn, log, partition, stream_id)

    def later_archived(self, partition: int, org_id: str, subject_id: str, after: str, until: str) -> str | None:
        """The position of an archived event of the subject in (after, until], if any."""
        return archive.later_of_subject(self.conn, partition, org_id, subject_id, after, until)

    def newest_archived(self, partition: int) -> str | None:
        """The archive's newest position in `partition` (events past it are in the stream only)."""
        return archive.newest_archived(self.conn, partition)

    def record_failure(self, letter_id: int | None, error: str) -> None:
        """Note a failed re-drive on the letter, which stays open."""
        dead_letters.record_failure(self.conn, letter_id, error)


@contextmanager
def open_redrive_reads(settings: Settings) -> Iterator[RedriveReads]:
    """The look-ups on a connection of their own, closed (and driver errors translated) at the end."""
    with connection(settings, autocommit=True) as conn:
        yield RedriveReads(conn)
