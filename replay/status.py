"""Replay status: per projection and partition, where it stands and what state it is in.

State, in order of precedence:
- `rebuilding`: a rebuild shadow exists (running, crashed or cancelled; the shadow's
  checkpoint shows how far it got; `replay rebuild NAME` resumes it);
- `outdated`: the stored read model was built by another projection version; the live
  projector refuses it until it is rebuilt;
- `live`: otherwise (also a read model no event has reached yet).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ledger import Settings, open_log
from projections.registry import PROJECTIONS, open_projection
from projections.status import partition_lag

from .targets import open_target

__all__ = ["StatusRow", "status"]


@dataclass(frozen=True)
class StatusRow:
    projection: str
    partition: int
    checkpoint: str
    head: str | None
    lag: int  # events behind the head (capped, see projections.status)
    lag_ms: int
    version: int | None  # the projection version the stored read model was built by
    code_version: int
    state: str  # live | rebuilding | outdated
    shadow_checkpoint: str | None
    dead_letters: int  # open ones


def status(settings: Settings, names: list[str] | None = None) -> list[StatusRow]:
    log = open_log(settings)
    rows: list[StatusRow] = []
    for name in names or list(PROJECTIONS):
        projection = open_projection(name, settings)
        try:
            version = projection.stored_version()
            lags = partition_lag(log, projection)
            letters = Counter(d.partition for d in projection.list_dead_letters())
        finally:
            projection.close()
        shadow = _shadow_checkpoints(settings, name)
        state = ("rebuilding" if shadow is not None else
                 "outdated" if version is not None and version != projection.version else "live")
        rows += [StatusRow(name, x.partition, x.checkpoint, x.head, x.behind, x.behind_ms, version, projection.version,
                           state, None if shadow is None else shadow.get(x.partition, "0-0"),
                           letters.get(x.partition, 0)) for x in lags]
    return rows


def _shadow_checkpoints(settings: Settings, name: str) -> dict[int, str] | None:
    target = open_target(settings, name)
    try:
        return dict(target.shadow_checkpoints()) if target.shadow_exists() else None
    finally:
        target.close()
