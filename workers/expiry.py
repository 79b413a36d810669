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
- PurgeTranscript has the idempotency key `purge/<session id>`; it also purges the messages
  of conversations closed more than the retention before (their read model keeps the row).
- CloseSession of an idle or too long conversation carries `expected_version` = the message
  count the job saw: a message appended since makes it a conflict, looked at again next round.

Each round walks the due rows once, in keyset pages, and does not loop until the read
model catches up (it would find its own, not yet projected, work again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from commands.bus import CommandBus
from commands.models import CloseSession, Command, ExpireMemory, PurgeTranscript
from projections.postgres.conversations import closable, purgeable
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
    closed: int = 0  # CloseSession appended (idle or too long conversations)
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


def close_conversations(bus: CommandBus, conn: Connection, now: datetime, idle_s: int, max_messages: int,
                        report: MaintenanceReport | None = None, org_id: str | None = None,
                        actor: str = ACTOR) -> MaintenanceReport:
    """Close open conversations idle for `idle_s` (0: never) or `max_messages` long (0: no limit)."""
    report = report or MaintenanceReport()
    if not idle_s and not max_messages:
        return report
    idle_before = now - timedelta(seconds=idle_s) if idle_s else None
    rows = closable(conn, idle_before, max_messages or None, org_id)
    commands: list[Command] = [
        CloseSession(org_id=org, agent_id=agent, session_id=session, reason=reason, messages=count,
                     expected_version=count, idempotency_key=f"close/{session}/v{count}", actor=actor)
        for org, agent, session, count, reason in rows]
    report.add(bus.send_many(commands) if commands else [], "closed")
    return report


def purge_conversations(bus: CommandBus, conn: Connection, now: datetime, retention_days: int,
                        report: MaintenanceReport | None = None, org_id: str | None = None,
                        actor: str = ACTOR) -> MaintenanceReport:
    """Purge the messages of conversations closed more than `retention_days` before `now`."""
    report = report or MaintenanceReport()
    rows = purgeable(conn, now - timedelta(days=retention_days), org_id)
    commands: list[Command] = [
        PurgeTranscript(org_id=org, agent_id=agent, session_id=session, retention_days=retention_days,
                        idempotency_key=f"purge/{session}", actor=actor) for org, agent, session in rows]
    report.add(bus.send_many(commands) if commands else [], "purged")
    return report


def run_maintenance(bus: CommandBus, conn: Connection, retention_days: int, now: datetime | None = None,
                    org_id: str | None = None, idle_close_s: int = 0, max_messages: int = 0,
                    actor: str = ACTOR) -> MaintenanceReport:
    """One round of expiry, retention and closing of idle or too long conversations (of one org's
    memories and sessions when `org_id` is given), its commands recorded as sent by `actor`."""
    now = now or datetime.now(timezone.utc)
    report = expire_due(bus, conn, now, org_id=org_id, actor=actor)
    report = close_conversations(bus, conn, now, idle_close_s, max_messages, report, org_id, actor)
    report = purge_conversations(bus, conn, now, retention_days, report, org_id, actor)
    return purge_transcripts(bus, conn, now, retention_days, report, org_id, actor)


__all__ = ["MaintenanceReport", "close_conversations", "expire_due", "purge_conversations",
           "purge_transcripts", "run_maintenance"]
