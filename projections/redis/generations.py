"""Redis read models as rebuild targets: a new key generation, swapped in by pointer.

A Redis projection (projections.redis.base) writes under a *label*: the live one follows
each partition's pointer, a rebuild writes a label of its own. Choices, and why:

- The shadow is a fresh label `<kind initial><version>-<random>` (e.g. `r2-1f0c9a3e`),
  recorded under `{ns}:rm:<model>:<kind>` so that a crashed or cancelled rebuild finds
  it again and resumes from that generation's checkpoints. A shadow whose stored version
  is not the code's is dropped and started afresh.
- The swap does not need to hold the live projector off, unlike PostgreSQL: each of its
  batch scripts checks the pointer first, so once the pointers name the new label, a
  live batch still aimed at the old generation is answered 'moved' (FencedOut), writes
  nothing, and the projector re-reads its checkpoints from the new generation. Events it
  applied to the old generation meanwhile are simply applied again to the new one. So
  the swap is: catch up, set every partition's pointer in one MULTI (one server: atomic;
  in a cluster each partition switches on its own, and queries merge partitions
  client-side, each partition being consistent), forget the shadow's record, then
  delete the old generation.
- Consistency of a comparison: Redis has no snapshot, so the live checkpoints are read
  before and after its digest and the comparison only counts when they agree (the live
  projector did not write in between). Verify retries until it catches such a moment.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from ledger.connections import is_cluster
from ledger.errors import ProjectionError
from ledger.settings import Settings

from ..shadow import Comparison, Snapshot
from .base import RedisProjection
from .calls import call
from .keys import text

__all__ = ["RedisShadow"]

ALIGN_TRIES = 20


class RedisShadow:
    """Shadow of a RedisProjection class (see the module docstring)."""

    stream_only = False

    def __init__(self, settings: Settings, projection: type[RedisProjection], kind: str = "rebuild"):
        self.settings, self.projection, self.name, self.kind = settings, projection, projection.name, kind
        self.live = self._open(None)
        self.client = self.live.client
        self.record = f"{{{settings.namespace}}}:rm:{self.name}:{kind}"

    def _open(self, label: str | None) -> RedisProjection:
        return self.projection.open(self.settings, label)

    @property
    def shadow_label(self) -> str:
        label = self._label()
        return f"Redis key label {label}" if label else f"a new Redis key generation of {self.name}"

    def _label(self) -> str | None:
        value = call(lambda: self.client.get(self.record), "reading the rebuild record")
        return text(value) if value else None

    def close(self) -> None:
        self.live.close()

    # -- the shadow --------------------------------------------------------------------

    def shadow_exists(self) -> bool:
        return self._label() is not None

    def open_shadow(self) -> RedisProjection:
        label = self._label()
        if label is None:
            label = f"{self.kind[0]}{self.live.version}-{secrets.token_hex(4)}"
            call(lambda: self.client.set(self.record, label), "recording the rebuild")
        shadow = self._open(label)
        stored = call(lambda: self.client.hget(shadow.keys.versions, label), "reading the shadow's version")
        if stored is not None and int(stored) != shadow.version:
            shadow.close()  # built by other code: nothing to resume
            self.drop_shadow()
            return self.open_shadow()
        shadow.ensure_current()
        return shadow

    def finish_bulk(self) -> None:
        """Nothing is set aside while a Redis generation is replayed."""

    def drop_shadow(self) -> None:
        label = self._label()
        if label is None:
            return
        shadow = self._open(label)
        try:
            shadow.drop()
        finally:
            shadow.close()
        call(lambda: self.client.delete(self.record), "forgetting the rebuild")

    def shadow_checkpoints(self) -> Mapping[int, str]:
        label = self._label()
        if label is None:
            return {}
        shadow = self._open(label)
        try:
            return shadow.checkpoints()
        finally:
            shadow.close()

    # -- digests -----------------------------------------------------------------------

    def live_snapshot(self) -> Snapshot:
        for _ in range(ALIGN_TRIES):
            snapshot = _steady(self.live)
            if snapshot is not None:
                return snapshot
        raise ProjectionError(f"the live {self.name!r} projector kept writing; could not take a steady digest")

    def shadow_snapshot(self) -> Snapshot:
        shadow = self._open(self._require_label())
        try:
            return Snapshot(shadow.checkpoints(), shadow.digest())
        finally:
            shadow.close()

    def _require_label(self) -> str:
        label = self._label()
        if label is None:
            raise ProjectionError(f"there is no {self.kind} shadow of {self.name!r}")
        return label

    def compare(self, limit: int = 5, align: Callable[[Mapping[int, str]], object] | None = None) -> Comparison:
        shadow = self._open(self._require_label())
        try:
            for _ in range(ALIGN_TRIES if align else 1):
                comparison = _compare(self.live, shadow)
                if comparison.aligned or align is None:
                    return comparison
                align(comparison.live.checkpoints)
        finally:
            shadow.close()
        raise ProjectionError(f"the live {self.name!r} projector kept moving while verify compared; "
                              "run verify again at a quieter moment (or with the projector stopped)")

    # -- the swap ----------------------------------------------------------------------

    def swap(self, catch_up: Callable[[], object]) -> Mapping[int, str]:
        label = self._require_label()
        catch_up()
        old = self.live.labels() - {label}
        partitions = range(self.settings.partitions)

        def promote(pipe: Any) -> None:
            for p in partitions:
                pipe.set(self.live.keys.pointer(p), label)
            pipe.delete(self.record)

        def run() -> None:
            # One MULTI on one server. A Redis Cluster has no MULTI across slots (each partition's
            # pointer has its own): there the pointers move one by one, then the record goes. A
            # reader meanwhile may see partitions of both generations, each a whole fold of its
            # partition, so any merge across partitions stays exact; a crash before the record
            # is deleted leaves the rebuild to resume and swap again.
            with self.client.pipeline(transaction=not is_cluster(self.client)) as pipe:
                promote(pipe)
                pipe.execute()

        call(run, f"swapping {self.name} to {label}")
        for stale in sorted(old):  # nothing writes there any more: the pointers moved
            generation = self._open(stale)
            try:
                generation.drop()
            finally:
                generation.close()
        return self.live.checkpoints()


def _steady(projection: RedisProjection) -> Snapshot | None:
    """Checkpoints and digest, or None if the checkpoints moved while digesting."""
    before = projection.checkpoints()
    digest = projection.digest()
    return Snapshot(before, digest) if projection.checkpoints() == before else None


def _compare(live: RedisProjection, shadow: RedisProjection) -> Comparison:
    shadow_snapshot = Snapshot(shadow.checkpoints(), {})
    live_checkpoints = live.checkpoints()
    if live_checkpoints != shadow_snapshot.checkpoints:
        return Comparison(Snapshot(live_checkpoints, {}), shadow_snapshot)
    live_snapshot = _steady(live)
    if live_snapshot is None or live_snapshot.checkpoints != live_checkpoints:
        return Comparison(Snapshot(live.checkpoints(), {}), shadow_snapshot)
    rebuilt = Snapshot(shadow_snapshot.checkpoints, shadow.digest())
    families = sorted(set(live_snapshot.digest) | set(rebuilt.digest))
    differences = tuple(
        f"{family}: {_keys(live_snapshot.digest.get(family))} keys in live, "
        f"{_keys(rebuilt.digest.get(family))} in the rebuild, contents differ"
        for family in families if live_snapshot.digest.get(family) != rebuilt.digest.get(family))
    return Comparison(live_snapshot, rebuilt, differences)


def _keys(digest: str | None) -> str:
    return digest.split(":", 1)[0] if digest else "0"
