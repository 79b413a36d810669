"""The producer side: ingest a session and get a ticket (receipt + queue position), retry one.

`ingest` returns as soon as the SessionIngested event is appended; nothing waits for the
workers. The queue position is an estimate of the sessions ahead of this one: the ready
messages of the `sessions` queue, plus the session events that the enqueuer has not read
yet and that were appended before this one (0 = next in line). Several workers take
messages concurrently, so it is an order of magnitude, not a promise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from commands.bus import CommandBus
from commands.models import IngestSession, RetrySession
from ledger.archive import find_event
from ledger.errors import InvalidCommand
from ledger.eventlog import Receipt
from ledger.events import stream_id_key
from projections.query import NotFound

from .broker import WorkerKeys
from .status import enqueuer_checkpoints, jobs_before, queue_depth


@dataclass(frozen=True)
class Ticket:
    session_id: str
    receipt: Receipt
    queue_position: int


class SessionQueue:
    """Ingest and retry sessions through `bus`; `conn` (autocommit) reads checkpoints and sessions."""

    def __init__(self, bus: CommandBus, conn: psycopg.Connection[Any]):
        self.bus, self.conn = bus, conn
        self.keys = WorkerKeys(bus.log.namespace)

    def ingest(self, command: IngestSession) -> Ticket:
        receipt = self.bus.send(command)
        return Ticket(command.session_id, receipt, self.position(receipt))

    def position(self, receipt: Receipt) -> int:
        """Sessions ahead of the one `receipt` appended (see the module docstring)."""
        checkpoints = enqueuer_checkpoints(self.conn)
        ready = queue_depth(self.bus.log.redis_client_for_workers(), self.keys).ready
        own = checkpoints.get(receipt.partition, "0-0")
        mine = self.bus.log.event_at(receipt.partition, receipt.stream_id)
        if mine is None or stream_id_key(own) >= stream_id_key(receipt.stream_id):
            return ready  # already enqueued (and perhaps trimmed since): somewhere in the ready list
        return ready + jobs_before(self.bus.log, checkpoints, mine)

    def retry(self, org_id: str, session_id: str, agent_id: str | None = None, reason: str | None = None,
              force: bool = False) -> Receipt:
        """Process a failed session again (any session with `force`)."""
        agent_id, status = self._session(org_id, session_id, agent_id)
        if status != "failed" and not force:
            raise InvalidCommand(f"session {session_id!r} is {status}, not failed; "
                                 "retry it anyway with --force (a summarized session is then skipped)")
        event_id, stream_id = self._ingest_position(org_id, agent_id, session_id)
        return self.bus.send(RetrySession(org_id=org_id, agent_id=agent_id, session_id=session_id,
                                          ingest_event_id=event_id, ingest_stream_id=stream_id, reason=reason))

    def _session(self, org_id: str, session_id: str, agent_id: str | None) -> tuple[str, str]:
        sql, args = "SELECT agent_id, status FROM sessions WHERE org_id = %s AND session_id = %s", [org_id, session_id]
        if agent_id is not None:
            sql, args = sql + " AND agent_id = %s", args + [agent_id]
        rows = self.conn.cursor(row_factory=tuple_row).execute(sql + " LIMIT 2", args).fetchall()
        if not rows:
            raise NotFound(f"no session {session_id!r} in org {org_id!r} (is the memories projector running?)")
        if len(rows) > 1:
            raise InvalidCommand(f"session id {session_id!r} is used by several agents of {org_id!r}; name the agent")
        return str(rows[0][0]), str(rows[0][1])

    def _ingest_position(self, org_id: str, agent_id: str, session_id: str) -> tuple[str, str]:
        found = find_event(self.conn, org_id, agent_id, session_id, "SessionIngested")
        if found is None:
            raise NotFound(f"the ingest of session {session_id!r} is not in the event archive yet; "
                           "is the archive projector running (`memledger up`)?")
        return found


__all__ = ["SessionQueue", "Ticket"]
