"""The producer side: ingest a session and get a ticket (receipt + queue position), retry one.

`ingest` returns as soon as the SessionIngested event is appended; nothing waits for the
workers. The queue position is an estimate of the sessions ahead of this one: the ready
messages of the `sessions` queue, plus the session events that the enqueuer has not read
yet and that were appended before this one (0 = next in line). Several workers take
messages concurrently, so it is an order of magnitude, not a promise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from commands.bus import CommandBus
from commands.models import IngestSession, RetrySession
from ledger.archive_lookups import find_event
from ledger.errors import InvalidCommand, LedgerError
from ledger.eventlog import Receipt
from ledger.events import stream_id_key
from ledger.postgres import DRIVER_ERRORS as POSTGRES_ERRORS
from projections.query import NotFound

from .pg_reads import session_owners
from .queue_keys import DRIVER_ERRORS as REDIS_ERRORS
from .queues import queue_reader
from .rabbitmq import DRIVER_ERRORS as RABBITMQ_ERRORS
from .status import enqueuer_checkpoints, jobs_before

if TYPE_CHECKING:
    from ledger.postgres import Connection
    from ledger.settings import Settings

#: What `estimate` turns into "unknown": the project's errors, and whatever either driver raises.
ESTIMATE_ERRORS: tuple[type[Exception], ...] = (LedgerError, *POSTGRES_ERRORS, *REDIS_ERRORS,
                                                 *RABBITMQ_ERRORS)


@dataclass(frozen=True)
class Ticket:
    session_id: str
    receipt: Receipt
    queue_position: int


class SessionQueue:
    """Ingest and retry sessions through `bus`; `conn` (autocommit) reads checkpoints and sessions;
    `settings` say which broker holds the queue (without them, dramatiq's keys beside the ledger)."""

    def __init__(self, bus: CommandBus, conn: Connection, settings: Settings | None = None):
        self.bus, self.conn = bus, conn
        self.queues = queue_reader(settings, bus.log)

    def ingest(self, command: IngestSession) -> Ticket:
        receipt = self.bus.send(command)
        return Ticket(command.session_id, receipt, self.position(receipt))

    def position(self, receipt: Receipt) -> int:
        """Sessions ahead of the one `receipt` appended (see the module docstring)."""
        checkpoints = enqueuer_checkpoints(self.conn)
        ready = self.queues.depth().ready
        own = checkpoints.get(receipt.partition, "0-0")
        mine = self.bus.log.event_at(receipt.partition, receipt.stream_id)
        if mine is None or stream_id_key(own) >= stream_id_key(receipt.stream_id):
            return ready  # already enqueued (and perhaps trimmed since): somewhere in the ready list
        return ready + jobs_before(self.bus.log, checkpoints, mine)

    def estimate(self, receipt: Receipt) -> int | None:
        """`position`, or None when the read models cannot tell (a server, a table, an event
        missing): the session is appended by then, so this never fails the ingest."""
        try:
            return self.position(receipt)
        except ESTIMATE_ERRORS:
            return None

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
        rows = session_owners(self.conn, org_id, session_id, agent_id)
        if not rows:
            raise NotFound(f"no session {session_id!r} in org {org_id!r} (is the memories projector running?)")
        if len(rows) > 1:
            raise InvalidCommand(f"session id {session_id!r} is used by several agents of {org_id!r}; name the agent")
        return rows[0]

    def _ingest_position(self, org_id: str, agent_id: str, session_id: str) -> tuple[str, str]:
        found = find_event(self.conn, org_id, agent_id, session_id, "SessionIngested")
        if found is None:
            raise NotFound(f"the ingest of session {session_id!r} is not in the event archive yet; "
                           "is the archive projector running (`memledger up`)?")
        return found


__all__ = ["SessionQueue", "Ticket"]
