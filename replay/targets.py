"""Which `Rebuildable` serves a projection: by the kind of store its read model lives in."""

from __future__ import annotations

from ledger.errors import ConfigurationError
from ledger.settings import Settings
from projections.postgres.base import PostgresProjection
from projections.redis.base import RedisProjection
from projections.registry import open_projection

from .postgres import PostgresShadow
from .redis import RedisShadow
from .target import Rebuildable

__all__ = ["lock_keys", "open_target"]


def open_target(settings: Settings, name: str, kind: str = "rebuild") -> Rebuildable:
    """The rebuild target of projection `name`; `kind` names the shadow (rebuild | verify)."""
    projection = open_projection(name, settings)
    try:
        store = type(projection)
    finally:
        projection.close()
    if issubclass(store, PostgresProjection):
        return PostgresShadow(settings, name, kind)
    if issubclass(store, RedisProjection):
        return RedisShadow(settings, name, kind)
    raise ConfigurationError(f"projection {name!r} ({store.__name__}) has no rebuild target")


def lock_keys(settings: Settings, name: str, kind: str, partitions: list[int]) -> list[str]:
    """Advisory-lock keys: one writer per (shadow, partition)."""
    return [f"{settings.namespace}:{kind}:{name}:{p}" for p in partitions]
