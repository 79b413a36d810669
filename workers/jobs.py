"""A job: one request to process one session, as it travels in a dramatiq message.

A job names the SessionIngested event to extract from (its position, so the worker reads
the transcript from the log itself and messages stay small) and the event that asked
for the work: the SessionIngested event itself, or a later SessionRetryRequested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import dramatiq

from ledger import events as ev
from ledger.events import RecordedEvent

from .broker import PROCESS_SESSION, SESSIONS_QUEUE, message


@dataclass(frozen=True, slots=True)
class Job:
    org_id: str
    agent_id: str
    session_id: str
    partition: int
    ingest_stream_id: str  # where the SessionIngested event is (same partition as the session)
    ingest_event_id: str
    trigger_event_id: str  # the event that requested this run (ingest or retry)
    requested_ms: int  # the trigger's stream time, for queue latency

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> Job:
        return cls(**{k: kwargs[k] for k in cls.__dataclass_fields__})

    def message(self) -> dramatiq.Message[Any]:
        # The message id is the trigger's event id: a duplicate enqueue is recognisable.
        return message(SESSIONS_QUEUE, PROCESS_SESSION, self.kwargs(), self.trigger_event_id)


def job_for(record: RecordedEvent, summarize_every: int = 0) -> Job | None:
    """The job an event asks for, if any (pure).

    A conversation asks for one when it is closed (SessionClosed: extract it whole, as an
    ingested session) and, with `summarize_every` > 0, at every `summarize_every`-th message
    (MessageAppended: summarize the part before it). The job names that event as its
    "ingest" event: the worker reads the messages up to it from the conversations read model.

    The job's org, agent, session and partition are always those of the asking event's
    envelope; a retry's payload only names the ingest event, which the worker then reads
    only if it is of that same org and agent (see `workers.process`).
    """
    e, position = record.event, record.position
    if isinstance(e.data, ev.SessionIngested):
        ingest_stream_id, ingest_event_id = position.stream_id, str(e.event_id)
    elif isinstance(e.data, ev.SessionClosed) or _digest_due(e, summarize_every):
        ingest_stream_id, ingest_event_id = position.stream_id, str(e.event_id)
    elif isinstance(e.data, ev.SessionRetryRequested):
        ingest_stream_id, ingest_event_id = e.data.ingest_stream_id, str(e.data.ingest_event_id)
    else:
        return None
    return Job(e.org_id, e.agent_id, e.subject_id, position.partition, ingest_stream_id, ingest_event_id,
               str(e.event_id), position.key[0])


def _digest_due(e: ev.Event, every: int) -> bool:
    """Is `e` a conversation's every-th message (its older part is then summarized)?"""
    return isinstance(e.data, ev.MessageAppended) and every > 0 and e.subject_version % every == 0


__all__ = ["Job", "job_for"]
