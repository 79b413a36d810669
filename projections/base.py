"""The role every read model plays for the projector runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledger.events import RecordedEvent


class FencedOut(Exception):
    """The stored checkpoint is not where this batch was read from: another projector
    advanced it first, or the commit that stored it was lost in a crash. Either way the
    caller re-reads the stored checkpoint and continues from there."""


class Projection(Protocol):
    """A deterministic fold of the ledger into a read model, exactly once in effect.

    `apply` writes the effects of `events` (all of one partition, in order, directly
    after `after`) together with the new checkpoint, atomically; if the stored
    checkpoint is not `after` it raises FencedOut and changes nothing.
    """

    name: str
    version: int

    def ensure_current(self) -> None: ...

    def checkpoints(self) -> dict[int, str]: ...

    def apply(self, partition: int, events: Sequence[RecordedEvent], after: str) -> None: ...

    def dead_letter(self, partition: int, stream_id: str, after: str, event_id: str | None,
                    event_type: str | None, error: str, attempts: int) -> None: ...

    def reconnect(self) -> None: ...

    def close(self) -> None: ...
