"""The role a read model plays for a rebuild: `Shadow`, one implementation per store.

A rebuild never writes where queries read. It writes a *shadow* version of the read model
(a PostgreSQL schema, a Redis key generation), which holds its own checkpoints, so a crashed
or cancelled rebuild resumes from them. `swap` then replaces the live version by the shadow
in one atomic step, checkpoints included, while the live projector is held off; afterwards
the live projector finds its checkpoint moved (FencedOut), re-reads it and continues from
the shadow's position. `compare` is what `verify` uses.

Implementations: `projections.postgres.shadow_schema.PostgresShadow` (shadow schemas, swapped by
moving tables) and `projections.redis.generations.RedisShadow` (key generations, swapped by
pointer). A projection class names its own (`ProjectionClass.shadow`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .base import Projection

__all__ = ["Comparison", "Digest", "Shadow", "Snapshot"]

Digest = Mapping[str, str]  # part of the read model (a table, a key family) -> "rows:hash"


@dataclass(frozen=True)
class Snapshot:
    """A read model's digest together with the checkpoints it was taken at."""

    checkpoints: Mapping[int, str]
    digest: Digest


@dataclass(frozen=True)
class Comparison:
    """Live and shadow read at one instant. Digests and differences are only filled in when
    both stand at the same checkpoints (`aligned`); otherwise the shadow must first be
    advanced to `live.checkpoints`."""

    live: Snapshot
    shadow: Snapshot
    differences: tuple[str, ...] = ()

    @property
    def aligned(self) -> bool:
        return dict(self.live.checkpoints) == dict(self.shadow.checkpoints)

    @property
    def agree(self) -> bool:
        return self.aligned and dict(self.live.digest) == dict(self.shadow.digest)


class Shadow(Protocol):
    """A read model's rebuild target: a shadow version, and the swap that makes it live."""

    name: str  # the projection's name
    stream_only: bool  # True when the read model *is* the archive: rebuild from the stream alone

    @property
    def shadow_label(self) -> str:
        """Where the shadow lives, for messages ("schema ml_rebuild_memories")."""

    def shadow_exists(self) -> bool:
        """Whether an earlier rebuild left a shadow (to resume, or to discard)."""

    def open_shadow(self) -> Projection:
        """Create the shadow (or reopen it) and return a projection writing into it.

        A shadow built by another projection version is discarded and started afresh.
        """

    def finish_bulk(self) -> None:
        """The bulk replay is over: restore what was set aside to speed it up (indexes),
        before the catch-up and the swap."""

    def shadow_checkpoints(self) -> Mapping[int, str]:
        """The shadow's checkpoints (empty when there is no shadow)."""

    def live_snapshot(self) -> Snapshot:
        """The live read model's checkpoints and digest, read consistently."""

    def shadow_snapshot(self) -> Snapshot: ...

    def compare(self, limit: int = 5, align: Callable[[Mapping[int, str]], object] | None = None) -> Comparison:
        """Read live and shadow consistently; when aligned, digest both and, if they differ,
        describe up to `limit` differing keys per part. With `align`, first hold the live
        projector off and call `align(live checkpoints)` to bring the shadow there."""

    def swap(self, catch_up: Callable[[], object]) -> Mapping[int, str]:
        """Hold the live projector off, run `catch_up` (which advances the shadow to the head),
        then atomically replace the live read model by the shadow; returns the checkpoints
        now live. Dropping the shadow is part of the same atomic step."""

    def drop_shadow(self) -> None: ...

    def close(self) -> None: ...
