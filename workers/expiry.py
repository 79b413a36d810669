"""Expiry and retention: periodic jobs that turn the passing of time into events.

Time is read here, and only here: a job picks what is due by the wall clock, and what it
decided travels as commands through the command bus and lands in the log as events
(MemoryExpired, SessionTranscriptPurged). Projections read only those events, so a replay
reproduces the read model without a clock.

The read model is only a hint of what is due; the commands make it safe:
- ExpireMemory carries `expected_version` = the version the job saw and the idempotency
  key `expire/<memory id>/v<version>`: if the memory changed since (its expiry moved, it
  was forgotten) the append is rejected and the next round looks again; two schedulers
  running the same round append once.
- PurgeTranscript has the idempotency key `purge/<session id>`.

Each round walks the due rows once, in keyset pages, and does not loop until the read
model catches up (it would find its own, not yet projected, work again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from commands.bus import CommandBus
from commands.models import Command, ExpireMemory, PurgeTranscript
from ledger.errors import RateLimited
from ledger.eventlog import Outcome, Receipt

from .pg_reads import due_memories, old_transcripts

if TYPE_CHECKING:
    from ledger.postgres import Connection

#: The actor of the commands of scheduled rounds (an operator's cleanup names its key instead).
ACTOR = "worker/maintenance"


@dataclass
class MaintenanceReport:
    expired: int = 0  # ExpireMemory appended
    purged: int = 0  # PurgeTranscript appended
    duplicates: int = 0  # already done by an earlier round
    skipped: int = 0  # rejected: changed since the read model saw it; looked at again next round
    errors: list[str] = field(default_factory=list)

    def add(self, outcomes: list[Outcome], kind: str) -> None:
        for outcome in outcomes:
            if isinstance(outcome, Receipt) and outcome.duplicate:
                self.duplicates += 1
            elif isinstance(outcome, Receipt):
                setattr(self, kind, getattr(self, kind) + 1)
            elif isinstance(outcome, RateLimited):
                self.errors.append(str(outcome))
            else:
                self.skipped += 1


def expire_due(bus: CommandBus, conn: Connection, now: datetime, report: MaintenanceReport | None = None,
               org_id: str | None = None, actor: str = ACTOR) -> MaintenanceReport:
    """Expire every memory (of `org_id` when given) whose `expires_at` is at or before `now` (as the
    read model has it)."""
    report = report or MaintenanceReport()
    for rows in due_memories(conn, now, org_id):
        commands: list[Command] = [
            ExpireMemory(org_id=org, agent_id=agent, memory_id=memory, expires_at=expires, expected_version=version,
                         idempotency_key=f"expire/{memory}/v{version}", actor=actor)
            for expires, org, agent, memory, version in rows]
        report.add(bus.send_many(commands), "expired")
    return report


def purge_transcripts(bus: CommandBus, conn: Connection, now: datetime, retention_days: int,
                      report: MaintenanceReport | None = None, org_id: str | None = None,
                      actor: str = ACTOR) -> MaintenanceReport:
    """Purge the raw transcripts of sessions (of `org_id` when given) ingested more than
    `retention_days` before `now`."""
    report = report or MaintenanceReport()
    for rows in old_transcripts(conn, now - timedelta(days=retention_days), org_id):
        commands: list[Command] = [
            PurgeTranscript(org_id=org, agent_id=agent, session_id=session, retention_days=retention_days,
                            idempotency_key=f"purge/{session}", actor=actor)
            for _, org, agent, session in rows]
        report.add(bus.send_many(commands), "purged")
    return report


def run_maintenance(bus: CommandBus, conn: Connection, retention_days: int, now: datetime | None = None,
                    org_id: str | None = None, actor: str = ACTOR) -> MaintenanceReport:
    """One round of expiry and retention (of one org's memories and sessions when `org_id` is given),
    its commands recorded as sent by `actor`."""
    now = now or datetime.now(timezone.utc)
    report = expire_due(bus, conn, now, org_id=org_id, actor=actor)
    return purge_transcripts(bus, conn, now, retention_days, report, org_id, actor)


__all__ = ["MaintenanceReport", "expire_due", "purge_transcripts", "run_maintenance"]
