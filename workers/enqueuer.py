"""The enqueuer: a consumer of the ledger, with its own checkpoint, that turns
SessionIngested and SessionRetryRequested events into dramatiq messages.

It is a `Projection` (see projections/base.py) run by the ordinary projector runtime,
so it gets leases, batching, retries across outages and dead letters for free. Its
"read model" is the dramatiq queue; its checkpoint is a row of `projection_checkpoints`.

Exactly once in effect: a batch's messages are enqueued inside the PostgreSQL
transaction that compare-and-sets the checkpoint, before it commits. A crash after the
enqueue and before the commit re-enqueues that batch on restart; a stale enqueuer that
lost its lease is fenced by the CAS (it may have enqueued a duplicate first). Either way
a duplicate message is harmless, because processing a session is idempotent (see
`workers.process`). Never the other way round: committing first could lose a session.

It is deliberately not in `projections.registry.PROJECTIONS`: a replay or rebuild must
never re-run extraction, and the registry is what `replay` rebuilds. `memledger worker`
runs it next to the dramatiq workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dramatiq import Broker

from ledger import open_log
from ledger.connections import database_url
from ledger.events import RecordedEvent
from ledger.settings import Settings
from projections.lease import Leases
from projections.postgres.base import PostgresProjection
from projections.runtime import Projector, ProjectorOptions, RunStats

from .broker import broker_kind, enqueue, make_broker
from .jobs import job_for

if TYPE_CHECKING:
    from ledger.postgres import Cursor

NAME = "session_enqueuer"


class SessionEnqueuer(PostgresProjection):
    name = NAME
    version = 1
    tables = ()

    def __init__(self, conninfo: str, schema: str, broker: Broker, summarize_every: int = 0):
        self.broker, self.summarize_every = broker, summarize_every
        self.enqueued = 0
        super().__init__(conninfo, schema)

    def write(self, cur: Cursor, events: Sequence[RecordedEvent]) -> None:
        # Runs inside the checkpoint's transaction: if enqueueing fails, nothing commits.
        for record in events:
            job = job_for(record, self.summarize_every)
            if job is not None:
                enqueue(self.broker, job.message(), NAME)
                self.enqueued += 1


def open_enqueuer(settings: Settings, broker: Broker | None = None) -> SessionEnqueuer:
    return SessionEnqueuer(database_url(settings), settings.db_schema, broker or make_broker(settings),
                           settings.session_summarize_every)


def run_enqueuer(settings: Settings, stop: threading.Event | None = None, until_caught_up: bool = False,
                 on_batch: Callable[[RunStats], None] | None = None, block_ms: int = 250) -> RunStats:
    """Enqueue sessions as they are ingested, over every partition whose lease this process takes."""
    broker_kind(settings)  # BrokerRequired (a cluster ledger, no broker URL) before anything opens
    log = open_log(settings)
    broker = make_broker(settings)
    enqueuer = open_enqueuer(settings, broker)
    leases = Leases.open(settings, NAME)
    options = ProjectorOptions(batch=settings.projector_batch, lease_ttl_ms=settings.lease_ttl_ms, block_ms=block_ms)
    try:
        return Projector(log, enqueuer, leases, options).run(stop, until_caught_up, on_batch)
    finally:
        enqueuer.close()
        broker.close()  # RabbitMQ: its AMQP connections (Redis: its pool goes with the client)
        leases.close()
        log.close()


__all__ = ["NAME", "SessionEnqueuer", "open_enqueuer", "run_enqueuer"]
