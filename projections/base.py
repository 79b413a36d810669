"""The roles a read model plays: `Projection` (an opened read model, for the projector runtime
and the operator's tools) and `ProjectionClass` (what the registry holds: asked for its
name, version and rebuild target without opening anything).

Implementations: `projections.postgres.base.PostgresProjection` (rows and checkpoint in one
transaction) and `projections.redis.base.RedisProjection` (keys and checkpoint in one Lua
script). Replay (`replay/`) talks to these roles only; it never switches on a concrete class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ledger.errors import ProjectionError, RedriveRefused
from ledger.events import RecordedEvent

if TYPE_CHECKING:
    from ledger.settings import Settings

    from .checkpoints import CheckpointStore
    from .shadow import Shadow

__all__ = ["DeadLetter", "FencedOut", "LaterApplied", "Projection", "ProjectionClass", "RedriveRefused"]


class FencedOut(Exception):
    """The stored checkpoint is not where this batch was read from: another projector
    advanced it first, or the commit that stored it was lost in a crash. Either way the
    caller re-reads the stored checkpoint and continues from there."""


@dataclass(frozen=True)
class DeadLetter:
    """An event a live projector could not apply; its checkpoint moved past it."""

    id: int | None  # None: kept by a Redis read model beside its keys (not re-drivable)
    projection: str
    partition: int
    stream_id: str
    event_id: str | None
    event_type: str | None
    error: str
    attempts: int
    failed_at: datetime | None
    redriven_at: datetime | None


#: Given the checkpoint of the letter's partition, the position of a later event of the same
#: subject at or below it (already applied: re-driving would apply out of order), else None.
LaterApplied = Callable[[str], "str | None"]


class Projection(Protocol):
    """A deterministic fold of the ledger into a read model, exactly once in effect.

    `apply` writes the effects of `events` (all of one partition, in order, directly
    after `after`) together with the new checkpoint, atomically; if the stored
    checkpoint is not `after` it raises FencedOut and changes nothing.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int:
        """The code's projection version (a read model built by another is refused)."""

    @property
    def skips_poison(self) -> bool:
        """False for a read model that must never skip an event (the archive: history is read
        from it): an event it cannot apply stops its projector instead of being dead-lettered."""

    def ensure_current(self) -> None:
        """Claim an empty read model for this version; refuse (OutdatedReadModel) one built by another."""

    def stored_version(self) -> int | None:
        """The projection version that built the stored read model (None: nothing claimed it yet)."""

    @property
    def checkpoint_store(self) -> CheckpointStore:
        """Where its checkpoints live (moved only by `apply` and `dead_letter`, with their effects)."""

    def checkpoints(self) -> dict[int, str]:
        """Every partition's checkpoint, from `checkpoint_store` (a live Redis model first
        re-reads which generation is live)."""

    def apply(self, partition: int, events: Sequence[RecordedEvent], after: str) -> None: ...

    def dead_letter(self, partition: int, stream_id: str, after: str, event_id: str | None,
                    event_type: str | None, error: str, attempts: int) -> None:
        """Record an event that cannot be applied and move the checkpoint past it (fenced like `apply`)."""

    def list_dead_letters(self, include_resolved: bool = False) -> list[DeadLetter]:
        """This read model's dead letters, open ones only unless `include_resolved`."""

    def redrive(self, letter: DeadLetter, event: RecordedEvent, later_applied: LaterApplied) -> None:
        """Apply a dead-lettered event now and mark its letter re-driven, at most once, holding
        the partition's projector off meanwhile; the checkpoint does not move. Raises
        RedriveRefused (nothing changes) when it cannot, e.g. `later_applied` names an event."""

    def digest(self) -> dict[str, str]:
        """Part of the read model (a table, a key family) -> "count:hash" of its whole state:
        equal digests, equal read models (what verify and the contract tests compare)."""

    def sibling(self) -> Projection | None:
        """Another handle on the same read model (a connection of its own) that may apply
        other partitions while this one applies its own, or None where that would not help
        or would not be safe (the projector's appliers: projections.runtime)."""

    def reconnect(self) -> None: ...

    def close(self) -> None: ...


class ProjectionClass(Protocol):
    """What the registry maps a name to: a projection class, asked without opening one."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    def open(self, settings: Settings, target: str | None = None) -> Projection:
        """The read model on the configured servers: the live one, or `target` (a rebuild's
        shadow: a schema, a key label)."""

    def shadow(self, settings: Settings, kind: str = "rebuild") -> Shadow:
        """Its rebuild target: the shadow a rebuild (`kind` "rebuild") or a verify ("verify")
        writes, and the swap that makes it live."""
