"""Processing one job: read the ingest event from the log, extract, append the results.

Exactly once in effect, never exactly once in delivery: a job may run twice (a
redelivered message, a consumer killed after appending, a duplicate enqueue). Each run
first asks the write side whether the session is already done (does its summary memory
exist? see `workers.plan.summary_marker`) and then skips extraction; a run that races
past that check appends the same ids under the same idempotency keys, so at worst it
spends CPU. Extraction never runs on replay: replays read events, and the extracted
memories already are events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from commands.bus import CommandBus
from commands.models import Command, StoreMemory, SummarizeConversation
from ledger import events as ev
from ledger.errors import (
    CommandError,
    LedgerError,
    RateLimited,
    StoreUnavailable,
    SubjectExists,
    UnknownSubject,
)
from ledger.eventlog import Outcome, Receipt

from .extract import Extractor
from .jobs import Job
from .pg_reads import ArchiveReader
from .plan import failure, plan, summary_marker
from .queue_keys import WorkerRedis

Result = Literal["summarized", "duplicate", "skipped"]
T = TypeVar("T")


class PermanentFailure(LedgerError):
    """The job can never succeed (its ingest event is gone, not a session's, or another org's); not retried."""


@dataclass
class SessionProcessor:
    bus: CommandBus
    extractor: Extractor
    archive: ArchiveReader | None = None

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()

    @property
    def counters(self) -> WorkerRedis:
        """The daily processed/failed counters, beside the ledger."""
        return WorkerRedis.of(self.bus.log)

    def process(self, job: Job) -> Result:
        """Extract and append the session's memories and summary, unless that is already done."""
        if self.already_summarized(job):
            return "skipped"
        ingest = self.ingest_event(job)
        if isinstance(ingest.data, ev.MessageAppended):
            return self._digest(job, ingest)
        extraction = self.extractor.extract(self.transcript(ingest))
        commands = plan(job, ingest, extraction, self.extractor.name)
        summary = self._append(commands)
        if summary.duplicate:
            return "duplicate"
        self.counters.count_day("processed")
        return "summarized"

    def transcript(self, ingest: ev.Event) -> tuple[ev.Message, ...]:
        """An ingested session's transcript; a closed conversation's messages (all before the close)."""
        if isinstance(ingest.data, ev.SessionIngested):
            return ingest.data.transcript
        return self.messages(ingest, ingest.subject_version - 1)

    def messages(self, trigger: ev.Event, through: int) -> tuple[ev.Message, ...]:
        """Messages 1..`through` of the trigger's conversation, once its read model holds them all."""
        if self.archive is None:
            raise PermanentFailure(f"session {trigger.subject_id}: a conversation is read from PostgreSQL, "
                                   "and this worker has no connection to it")
        return wait_for_messages(lambda: self.archive.conversation(  # type: ignore[union-attr]
            trigger.org_id, trigger.agent_id, trigger.subject_id, through), through, trigger.subject_id)

    def _digest(self, job: Job, trigger: ev.Event) -> Result:
        """Summarize a long conversation's older part (messages up to the trigger's)."""
        extraction = self.extractor.extract(self.messages(trigger, trigger.subject_version))
        receipt = self.bus.send(digest_command(job, trigger, extraction.summary, self.extractor.name))
        return "duplicate" if receipt.duplicate else "summarized"

    def fail(self, job: Job, error: str, attempts: int) -> bool:
        """Mark the session failed for this trigger; False if that was already recorded."""
        try:
            receipt = self.bus.send(failure(job, error, attempts))
        except UnknownSubject:
            return False  # no such session: nothing to mark
        if not receipt.duplicate:
            self.counters.count_day("failed")
        return not receipt.duplicate

    def already_summarized(self, job: Job) -> bool:
        return self.bus.log.has_subject(summary_marker(job))

    def ingest_event(self, job: Job) -> ev.Event:
        """The job's SessionIngested event: from the stream, or the archive once trimmed.

        A retry's job names its ingest event by ids taken from a command, so the event must
        also be of the job's org and agent (those come from the envelope of the event that
        asked for the job). Another org's event reads exactly as a missing one: it is never
        extracted, and the failure recorded on the job's session says nothing about it.
        """
        found = self.bus.log.event_at(job.partition, job.ingest_stream_id)
        event = None if found is None else found.event
        if event is None and self.archive is not None:
            event = self.archive.archived(job.ingest_event_id, job.org_id, job.agent_id)
        if event is None or not _belongs(event, job):
            raise PermanentFailure(f"session {job.session_id}: no event {job.ingest_event_id} of {job.org_id}/"
                                   f"{job.agent_id} at {job.partition}/{job.ingest_stream_id} nor in the archive")
        if not isinstance(event.data, EXTRACTED_FROM) or event.subject_id != job.session_id:
            raise PermanentFailure(f"event {job.ingest_event_id} is a {event.type} of {event.subject_id}, "
                                   f"not the ingest of session {job.session_id}")
        return event

    def _append(self, commands: list[Command]) -> Receipt:
        """Append in one round trip; tolerate what a rerun meets. Returns SummarizeSession's receipt."""
        outcomes = self.bus.send_many(commands)
        for command, outcome in zip(commands, outcomes):
            raise_unless_done(command, outcome)
        first = outcomes[0]
        assert isinstance(first, Receipt)
        return first


#: The events a job extracts from: an ingested session, a closed conversation, a long one's Nth message.
EXTRACTED_FROM = (ev.SessionIngested, ev.SessionClosed, ev.MessageAppended)
#: How long a job waits for the conversations read model to hold the messages it needs.
MESSAGES_WAIT_S = 30.0


def wait_for_messages(read: Callable[[], list[ev.Message]], through: int, session_id: str,
                      timeout: float = MESSAGES_WAIT_S) -> tuple[ev.Message, ...]:
    """`read()` once it returns all `through` messages (the projector may lag the enqueuer);
    a transient StoreUnavailable after `timeout`, which dramatiq retries."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if len(found) >= through:
            return tuple(found[:through])
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"session {session_id}: the conversations read model holds {len(found)} "
                                   f"of {through} messages after {timeout:.0f}s; is `memledger projector "
                                   "conversations` running?")
        time.sleep(0.05)


def digest_command(job: Job, trigger: ev.Event, summary: str, extractor: str) -> SummarizeConversation:
    """The partial summary, once per trigger message (its idempotency key)."""
    return SummarizeConversation(
        org_id=job.org_id, agent_id=job.agent_id, session_id=job.session_id, summary=summary or "(empty)",
        through=trigger.subject_version, extractor=extractor, causation_id=trigger.event_id,
        correlation_id=trigger.correlation_id or trigger.event_id, actor=f"worker/{extractor}",
        idempotency_key=f"digest/{trigger.event_id}")


def _belongs(event: ev.Event, job: Job) -> bool:
    """Is `event` the one the job names, and of the job's own org and agent?"""
    return (str(event.event_id), event.org_id, event.agent_id) == (job.ingest_event_id, job.org_id, job.agent_id)


def within_rate(action: Callable[[], T], waits: int, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `action`, waiting out the org's rate limit up to `waits` times before giving up.

    Being rate-limited says nothing about the session, so it should not use up the retries
    that mark a session failed; a rerun after a partial append is harmless (see workers.plan).
    """
    for _ in range(waits):
        try:
            return action()
        except RateLimited as e:
            sleep(min(e.retry_after, 5.0))
    return action()


def raise_unless_done(command: Command, outcome: Outcome) -> None:
    """A stored memory that exists already (an earlier run, keys since expired) counts as done."""
    if isinstance(outcome, SubjectExists) and isinstance(command, StoreMemory):
        return
    if isinstance(outcome, CommandError):
        raise outcome


__all__ = ["PermanentFailure", "ArchiveReader", "SessionProcessor", "raise_unless_done", "within_rate"]
