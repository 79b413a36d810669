"""Dead letters: list them, and re-drive them into their projection.

A dead letter is an event a live projector could not apply; its checkpoint moved past it.
Re-driving applies that event now, after events that came later were applied, so it is
only safe when nothing it could be ordered against has been applied since. The choice:

- The event is read back from the log (archive, else stream) by its position; nothing is
  ever appended to the ledger.
- It is applied through the projection's own write path (`Projection.redrive`) in one
  transaction that also marks the letter `redriven_at`, so a letter takes effect at most
  once. The checkpoint does not move (it is already past the event).
- That transaction first locks the projection's checkpoint row for the partition, which
  holds the live projector of that partition off; then it refuses if any later event of
  the same subject (org and memory or session id) lies at or below the checkpoint, i.e.
  was already applied. Effects on different subjects commute in the current read models
  (per-subject rows; counters are sums, times are LEAST/GREATEST), so such a re-drive
  gives the state in-order application would have given. A refused letter stays open:
  fix the cause and run `memledger replay rebuild NAME`, which applies every event in
  order and marks the letters it got past as resolved.
- The archive's letters need no ordering check (the archive is a set of events).
- Only PostgreSQL projections are re-driven. Redis read models keep their dead letters
  beside their keys (listed here too) and refuse; a rebuild clears them with the old generation.
- Letters of consumers that are not registered read models (the session enqueuer) are
  listed from the table `dead_letters` directly; they are not re-driven here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ledger import Settings, open_log
from ledger.errors import EventError, OutdatedReadModel
from ledger.eventlog import EventLog
from ledger.events import RecordedEvent, stream_id_key
from ledger.log import RedisEventLog
from ledger.postgres import connection
from projections.base import DeadLetter, Projection, RedriveRefused
from projections.postgres import dead_letters
from projections.postgres.redrive_reads import RedriveReads, open_redrive_reads
from projections.registry import PROJECTIONS, open_projection
from projections.runtime import POISON

__all__ = ["DeadLetter", "RedriveOutcome", "list_dead_letters", "open_counts", "redrive"]

#: Stream entries scanned for later events of a subject before refusing.
ORDER_SCAN_LIMIT = 200_000
#: Stream entries read per round trip of that scan.
SCAN_PAGE = 1000


@dataclass(frozen=True)
class RedriveOutcome:
    letter: DeadLetter
    outcome: Literal["redriven", "refused", "failed"]
    detail: str = ""


def list_dead_letters(settings: Settings, projection: str | None = None, include_resolved: bool = False,
                      ids: Iterable[int] | None = None) -> list[DeadLetter]:
    """Dead letters of every read model and checkpointed consumer, or of `projection`, or the
    letters `ids` (PostgreSQL ones: only those have ids); oldest first per partition."""
    names = [n for n in PROJECTIONS if projection in (None, n)] if ids is None else []
    with connection(settings, autocommit=True) as conn:
        if ids is not None or (projection is not None and not names):  # by id, or an unregistered consumer's
            rows = dead_letters.letters(conn, projection, include_resolved, ids)
        else:  # the read models' come from them below; the table also holds other consumers'
            rows = [] if projection is not None else dead_letters.letters(conn, None, include_resolved,
                                                                          exclude=PROJECTIONS)
    for name in names:
        read_model = open_projection(name, settings)
        try:
            rows += read_model.list_dead_letters(include_resolved)
        finally:
            read_model.close()
    return sorted(rows, key=lambda d: (d.projection, d.partition, stream_id_key(d.stream_id)))


def open_counts(settings: Settings) -> dict[tuple[str, int], int]:
    """Open letters in the table `dead_letters`, per (projection, partition)."""
    with connection(settings, autocommit=True) as conn:
        return dead_letters.open_counts(conn)


def redrive(settings: Settings, projection: str | None = None,
            ids: Iterable[int] | None = None) -> list[RedriveOutcome]:
    """Re-apply open dead letters (all, one projection's, or the given ids), in log order."""
    letters = list_dead_letters(settings, projection, ids=ids)
    log, out = open_log(settings), []
    try:
        with open_redrive_reads(settings) as reads:
            for name in dict.fromkeys(d.projection for d in letters):
                out += _redrive_projection(settings, log, reads, name, [d for d in letters if d.projection == name])
    finally:
        log.close()
    return out


def _redrive_projection(settings: Settings, log: RedisEventLog, reads: RedriveReads, name: str,
                        letters: list[DeadLetter]) -> list[RedriveOutcome]:
    projection = open_projection(name, settings)
    try:
        try:
            projection.ensure_current()
        except OutdatedReadModel as e:
            return [RedriveOutcome(d, "refused", str(e)) for d in letters]
        return [_redrive_one(log, reads, projection, d) for d in letters]
    finally:
        projection.close()


def _redrive_one(log: RedisEventLog, reads: RedriveReads, projection: Projection,
                 letter: DeadLetter) -> RedriveOutcome:
    try:
        r = reads.event_at(log, letter.partition, letter.stream_id)
    except EventError as e:
        return _failed(reads, letter, f"still undecodable: {e}")
    if r is None:
        return RedriveOutcome(letter, "refused", "the event is in neither the archive nor the stream any more")
    try:
        projection.redrive(letter, r, lambda checkpoint: _later_applied(reads, log, r, checkpoint))
    except RedriveRefused as e:
        return RedriveOutcome(letter, "refused", str(e))
    except POISON as e:
        return _failed(reads, letter, f"{type(e).__name__}: {e}")
    return RedriveOutcome(letter, "redriven", f"{r.event.type} {r.event.subject_id}")


def _later_applied(reads: RedriveReads, log: EventLog, r: RecordedEvent, checkpoint: str) -> str | None:
    """The position of a later event of the same subject at or below `checkpoint`, if any."""
    p, e = r.position.partition, r.event
    later = reads.later_archived(p, e.org_id, e.subject_id, r.position.stream_id, checkpoint)
    if later is not None:
        return later
    start = max(r.position.stream_id, reads.newest_archived(p) or "0-0", key=stream_id_key)
    return _later_in_stream(log, p, start, checkpoint, e.org_id, e.subject_id)


def _later_in_stream(log: EventLog, partition: int, after: str, until: str, org: str, subject: str) -> str | None:
    """Scan the stream tail the archive does not hold yet (normally short)."""
    scanned = 0
    while stream_id_key(after) < stream_id_key(until):
        # Undecoded entries: only two envelope fields are looked at, so no event is upcast.
        entries = log.read_entries(partition, after, SCAN_PAGE, until)
        for _, sid, fields in entries:
            if _subject_of(fields) == (org, subject):
                return sid
        scanned += len(entries)
        if len(entries) < SCAN_PAGE:
            return None
        if scanned >= ORDER_SCAN_LIMIT:
            raise RedriveRefused(f"the stream tail past the archive is over {ORDER_SCAN_LIMIT} events; cannot check "
                                 "the order cheaply: let the archive projector catch up, or rebuild")
        after = entries[-1][1]
    return None


def _subject_of(fields: dict[Any, Any]) -> tuple[object, object]:
    """(org_id, subject_id) of an undecoded entry, read from its body `e` (see `ledger.eventlog.Entry`)."""
    body = orjson.loads(fields.get(b"e", b"{}"))
    return body.get("org_id"), body.get("subject_id")


def _failed(reads: RedriveReads, letter: DeadLetter, error: str) -> RedriveOutcome:
    reads.record_failure(letter.id, error)
    return RedriveOutcome(letter, "failed", error)
