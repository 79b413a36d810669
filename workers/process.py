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
from commands.models import Command, StoreMemory
from ledger import events as ev
from ledger.errors import CommandError, LedgerError, RateLimited, SubjectExists, UnknownSubject
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
        assert isinstance(ingest.data, ev.SessionIngested)  # checked by ingest_event
        extraction = self.extractor.extract(ingest.data.transcript)
        commands = plan(job, ingest, extraction, self.extractor.name)
        summary = self._append(commands)
        if summary.duplicate:
            return "duplicate"
        self.counters.count_day("processed")
        return "summarized"

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
        if not isinstance(event.data, ev.SessionIngested) or event.subject_id != job.session_id:
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
