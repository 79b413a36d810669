"""Look-ups in the event archive: one subject's or agent's history (for queries: history and
point-in-time answers) and single events (for workers and re-drives).

`ledger.archive` reads history in position order for replays; these read by who and what,
through the archive's indexes on org, agent, subject and event id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import tuple_row

from .archive import decode_row
from .codec import from_dict
from .events import Event, RecordedEvent

__all__ = ["agent_history", "event_by_id", "find_event", "subject_history"]

_HISTORY = ("SELECT partition, stream_ms, stream_seq, subject_version, schema_version, body::text FROM event_archive"
            " WHERE {} ORDER BY partition, stream_ms, stream_seq")


def _history(conn: psycopg.Connection[Any], where: str, args: tuple[Any, ...]) -> list[RecordedEvent]:
    with conn.cursor(row_factory=tuple_row) as cur:  # whatever the connection's row factory
        rows = cur.execute(_HISTORY.format(where), args).fetchall()
    return [decode_row(*row) for row in rows]


def subject_history(conn: psycopg.Connection[Any], org_id: str, subject_id: str) -> list[RecordedEvent]:
    """Every archived event of one memory (or session) of an org, oldest first, upcast."""
    return _history(conn, "org_id = %s AND subject_id = %s", (org_id, subject_id))


def agent_history(conn: psycopg.Connection[Any], org_id: str, agent_id: str, until: datetime) -> list[RecordedEvent]:
    """The archived events of one agent that occurred at or before `until`, in position order, upcast."""
    return _history(conn, "org_id = %s AND agent_id = %s AND occurred_at <= %s", (org_id, agent_id, until))


def event_by_id(conn: psycopg.Connection[Any], event_id: str, org_id: str, agent_id: str) -> Event | None:
    """Event `event_id` if the archive holds it as one of `org_id`/`agent_id`'s: another org's
    (or agent's) event reads as missing."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT subject_version, body::text FROM event_archive"
                          " WHERE event_id = %s AND org_id = %s AND agent_id = %s",
                          (event_id, org_id, agent_id)).fetchone()
    return None if row is None else from_dict(orjson.loads(row[1]), int(row[0]))


def find_event(conn: psycopg.Connection[Any], org_id: str, agent_id: str, subject_id: str,
               event_type: str) -> tuple[str, str] | None:
    """(event id, stream id) of the first archived `event_type` event of a subject; None while
    the archive does not hold one (the archive projector may be behind)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT event_id, stream_ms, stream_seq FROM event_archive WHERE org_id = %s AND agent_id = %s"
            " AND subject_id = %s AND type = %s ORDER BY partition, stream_ms, stream_seq LIMIT 1",
            (org_id, agent_id, subject_id, event_type)).fetchone()
    return None if row is None else (str(row[0]), f"{row[1]}-{row[2]}")
