"""From an extraction to commands (pure): the ids and idempotency keys that make a rerun harmless.

Every id and key derives from the SessionIngested event id (E) and the item's index:

    memory i        memory_id  mem_<uuid5(E/i)>   idempotency key  extract/E/i   (i = 0: the summary)
    the summary     SummarizeSession on the session,  idempotency key  summarize/E
    a failure       MarkSessionFailed on the session, idempotency key  failed/<trigger event id>

so processing a session twice (a redelivered message, a worker killed after appending,
a retry of a session that had in fact succeeded) appends nothing new: a repeated key
returns the original receipt, and once keys have expired the deterministic memory id
makes the create fail as `SubjectExists`, which the worker counts as done.

Order: SummarizeSession, the discrete memories, and the summary memory last. All go to
one partition in one append-script call, and the rate limiter admits a prefix of them, so
once the summary memory exists on the write side everything before it was appended too.
That makes "is this session done?" one exact, permanent check (`summary_marker`), with no
idempotency window and no read-model lag.

Hierarchy: the session's raw transcript (SessionIngested) -> the summary memory
(memory_type "summary", index 0) -> the discrete memories (fact / preference /
decision), each with `metadata.parent_id` = the summary's memory id. Every command's
`causation_id` is E.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from commands.models import Command, MarkSessionFailed, StoreMemory, SummarizeSession
from ledger.eventlog import Subject
from ledger.events import Event

from .extract import Extraction, as_tag
from .jobs import Job

_IDS = uuid.UUID("6f1c8a52-3b7e-4c1d-9a55-0e2f4d9b7c31")  # uuid5 namespace of extracted memory ids
SUMMARY_IMPORTANCE = 0.5
MAX_ERROR = 4000


def memory_id(ingest_event_id: str, index: int) -> str:
    return f"mem_{uuid.uuid5(_IDS, f'{ingest_event_id}/{index}').hex}"


def item_key(ingest_event_id: str, index: int) -> str:
    return f"extract/{ingest_event_id}/{index}"


def summary_key(ingest_event_id: str) -> str:
    return f"summarize/{ingest_event_id}"


def failure_key(trigger_event_id: str) -> str:
    return f"failed/{trigger_event_id}"


def _common(job: Job, ingest: Event, extractor: str) -> dict[str, Any]:
    return {"org_id": job.org_id, "agent_id": job.agent_id, "causation_id": UUID(job.ingest_event_id),
            "correlation_id": ingest.correlation_id or ingest.event_id, "actor": f"worker/{extractor}"}


def summary_marker(job: Job) -> Subject:
    """The session's summary memory, as the write side knows it (`EventLog.has_subject`)."""
    return Subject("m", job.org_id, job.agent_id, memory_id(job.ingest_event_id, 0))


def plan(job: Job, ingest: Event, extraction: Extraction, extractor: str) -> list[Command]:
    """SummarizeSession, the discrete memories, then the summary memory (the marker; see above)."""
    common, e = _common(job, ingest, extractor), job.ingest_event_id
    summary_id = memory_id(e, 0)
    source = {"source": "extraction", "extractor": extractor, "source_event_id": e}
    discrete = [StoreMemory(
        **common, memory_id=memory_id(e, index), content=item.content, memory_type=item.kind, tags=item.tags,
        importance=item.importance, session_id=job.session_id, idempotency_key=item_key(e, index),
        metadata={**source, "index": index, "parent_id": summary_id, "message_index": item.message_index})
        for index, item in enumerate(extraction.items, 1)]
    topics = tuple(dict.fromkeys(t for p in extraction.topics if (t := as_tag(p))))[:5]
    summary = StoreMemory(
        **common, memory_id=summary_id, content=extraction.summary, memory_type="summary", tags=topics,
        importance=SUMMARY_IMPORTANCE, metadata={**source, "index": 0}, session_id=job.session_id,
        idempotency_key=item_key(e, 0))
    summarize = SummarizeSession(
        **common, session_id=job.session_id, summary=extraction.summary, extractor=extractor,
        memory_ids=(summary_id, *(c.memory_id for c in discrete)), idempotency_key=summary_key(e))
    return [summarize, *discrete, summary]


def failure(job: Job, error: str, attempts: int) -> MarkSessionFailed:
    """The command that marks the session failed for this trigger (once per trigger)."""
    return MarkSessionFailed(
        org_id=job.org_id, agent_id=job.agent_id, session_id=job.session_id, error=error[:MAX_ERROR] or "unknown",
        attempts=max(1, attempts), causation_id=UUID(job.trigger_event_id), actor="worker",
        idempotency_key=failure_key(job.trigger_event_id))


__all__ = ["failure", "failure_key", "item_key", "memory_id", "plan", "summary_key", "summary_marker"]
