"""A projection's rebuild target, by name: the shadow its class names (`ProjectionClass.shadow`).

The role (`projections.shadow.Shadow`) and its implementations live with the read models'
stores (`projections.postgres.shadow_schema`, `projections.redis.generations`); replay only orchestrates
them, so it never needs to know which store a read model uses.
"""

from __future__ import annotations

from ledger.settings import Settings
from projections.registry import projection_class
from projections.shadow import Shadow

__all__ = ["lock_keys", "open_target"]


def open_target(settings: Settings, name: str, kind: str = "rebuild") -> Shadow:
    """The rebuild target of projection `name`; `kind` names the shadow (rebuild | verify)."""
    return projection_class(name).shadow(settings, kind)


def lock_keys(settings: Settings, name: str, kind: str, partitions: list[int]) -> list[str]:
    """Advisory-lock keys: one writer per (shadow, partition)."""
    return [f"{settings.namespace}:{kind}:{name}:{p}" for p in partitions]
