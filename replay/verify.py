"""Verify: rebuild a read model into a shadow of its own and compare it with the live one.

The shadow (`<ns>_verify_<name>`, never the rebuild's) is advanced to exactly the live
checkpoints (always from scratch: a verify checks what a rebuild from nothing gives),
then both are digested in one consistent read. The live projector may keep
running: if it moves on between the two, the shadow follows it and the comparison is
taken again; after a few tries the last comparison holds the live projector's checkpoint
writes off (as a swap does) for the moment it takes to align and read. When the digests
differ, the differing keys are listed. The shadow is dropped afterwards unless `keep`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from ledger import Settings, open_log
from ledger.errors import ProjectionError
from ledger.events import stream_id_key
from ledger.log import RedisEventLog
from ledger.postgres import advisory_locks
from projections.shadow import Comparison, Digest, Shadow

from .rebuild import BATCH, Replayer, Report, estimate_events, fewer_collections, refuse_trimmed
from .targets import lock_keys, open_target

__all__ = ["VerifyResult", "verify"]

UNLOCKED_TRIES = 3


@dataclass(frozen=True)
class VerifyResult:
    projection: str
    agree: bool
    checkpoints: Mapping[int, str]
    live: Digest
    rebuilt: Digest
    differences: tuple[str, ...]
    applied: int
    seconds: float


def verify(settings: Settings, name: str, batch: int = BATCH, report: Report | None = None,
           keep: bool = False) -> VerifyResult:
    started = time.monotonic()
    log = open_log(settings)
    target = open_target(settings, name, kind="verify")
    try:
        with advisory_locks(settings, lock_keys(settings, name, "verify", list(range(log.partitions)))) as busy:
            if busy:
                raise ProjectionError(f"another verify of {name!r} is running; wait for it")
            if target.stream_only:
                refuse_trimmed(log, name, range(log.partitions), {})
            with fewer_collections():
                comparison, applied = _aligned(settings, log, target, batch, report)
            if not keep:
                target.drop_shadow()
    finally:
        target.close()
    return VerifyResult(name, comparison.agree, comparison.live.checkpoints, comparison.live.digest,
                        comparison.shadow.digest, comparison.differences, applied, time.monotonic() - started)


def _aligned(settings: Settings, log: RedisEventLog, target: Shadow, batch: int,
             report: Report | None) -> tuple[Comparison, int]:
    target.drop_shadow()  # a verify starts from nothing: what it checks is a rebuild from scratch
    shadow = target.open_shadow()
    try:
        replayer = Replayer(log, shadow, None if target.stream_only else settings, batch, report, phase="verify")
        cursors = dict(shadow.checkpoints())

        def follow(live: Mapping[int, str]) -> None:
            ahead = [p for p, sid in cursors.items() if p not in live or stream_id_key(sid) > stream_id_key(live[p])]
            if ahead:  # live checkpoints only move forward, so this is someone else's doing
                raise ProjectionError(f"the live {target.name!r} read model moved behind the verify shadow "
                                      f"(partition {ahead[0]}); run verify again")
            replayer.total = replayer.applied + sum(
                estimate_events(settings, log, p, cursors.get(p, "0-0"), sid, target.stream_only)
                for p, sid in live.items())
            replayer.to(dict(live), cursors)

        for _ in range(UNLOCKED_TRIES):
            comparison = target.compare()
            if comparison.aligned:
                return comparison, replayer.applied
            follow(comparison.live.checkpoints)
        return target.compare(align=follow), replayer.applied
    finally:
        shadow.close()
