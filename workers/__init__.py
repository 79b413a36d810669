"""Background processing: dramatiq workers that turn ingested sessions into memories.

    SessionIngested --(enqueuer: a checkpointed ledger consumer)--> dramatiq `sessions` queue
        --(process_session actor: extract)--> StoreMemory x N + SummarizeSession, via the bus
    periodic run_maintenance --> ExpireMemory / PurgeTranscript, via the bus

Depends on `ledger`, `commands` and `projections`; none of them imports `workers`.
`workers.actors` (the dramatiq actors) is imported only by worker processes.

Only the adapters talk to a server: `broker`, `actors` and `supervisor` (dramatiq on Redis,
or on RabbitMQ through `rabbitmq`; `queues` picks the one whose queue depth is read),
`queue_keys` (the workers' own Redis keys: queue lengths, daily counters, heartbeats) and
`pg_reads` (what the workers read from PostgreSQL). The others hold the logic and reach
the servers through those, the ledger's `EventLog` and the command bus.
"""

from __future__ import annotations

from .broker import WorkerKeys, make_broker
from .enqueuer import SessionEnqueuer, open_enqueuer, run_enqueuer
from .expiry import MaintenanceReport, expire_due, purge_transcripts, run_maintenance
from .extract import (
    Extraction,
    ExtractedItem,
    ExtractionError,
    Extractor,
    KeywordExtractor,
    LLMExtractor,
    make_extractor,
)
from .ingest import SessionQueue, Ticket
from .jobs import Job, job_for
from .plan import plan
from .process import PermanentFailure, SessionProcessor
from .status import WorkerStatus, collect
from .supervisor import Supervisor, WorkerOptions

__all__ = ["Extraction", "ExtractionError", "ExtractedItem", "Extractor", "Job", "KeywordExtractor", "LLMExtractor",
           "MaintenanceReport", "PermanentFailure", "SessionEnqueuer", "SessionProcessor", "SessionQueue",
           "Supervisor", "Ticket", "WorkerKeys", "WorkerOptions", "WorkerStatus", "collect", "expire_due",
           "job_for", "make_broker", "make_extractor", "open_enqueuer", "plan", "purge_transcripts",
           "run_enqueuer", "run_maintenance"]
