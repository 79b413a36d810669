"""The read models by name: each name maps to its projection class (`ProjectionClass`).

A class answers what replay needs without opening anything (its version, its rebuild
target: `shadow`), and opens itself on the configured servers (`open`). Later read models
register here; `replay` rebuilds exactly what is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from ledger.errors import ConfigurationError
from ledger.settings import Settings

from .base import Projection, ProjectionClass
from .postgres.api_keys import ApiKeysProjection
from .postgres.archive import ArchiveProjection
from .postgres.memories import MemoriesProjection
from .redis import REDIS_PROJECTIONS

__all__ = ["PROJECTIONS", "Factory", "open_projection", "projection_class"]

#: What older code registered instead of a class: `(settings, schema or key label) -> Projection`.
Factory = Callable[[Settings, str], Projection]

PROJECTIONS: dict[str, ProjectionClass] = {
    ArchiveProjection.name: ArchiveProjection,
    MemoriesProjection.name: MemoriesProjection,
    ApiKeysProjection.name: ApiKeysProjection,
    **{cls.name: cls for cls in REDIS_PROJECTIONS},
}


def _entry(name: str) -> ProjectionClass | Factory:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise ConfigurationError(f"no projection named {name!r}; known: {', '.join(sorted(PROJECTIONS))}") from None


def projection_class(name: str, settings: Settings | None = None) -> ProjectionClass:
    """The class registered as `name`; nothing is opened.

    `settings` serves only a factory registered by older code, whose class is learnt by
    opening (and closing) the live projection once.
    """
    entry = _entry(name)
    if isinstance(entry, type):
        return cast(ProjectionClass, entry)
    if settings is None:
        raise ConfigurationError(f"projection {name!r} is registered as a factory; its class needs settings")
    projection = cast(Factory, entry)(settings, settings.db_schema)
    try:
        return cast(ProjectionClass, type(projection))
    finally:
        projection.close()


def open_projection(name: str, settings: Settings, target: str | None = None) -> Projection:
    """Open read model `name`; `target` overrides where it writes (a rebuild's shadow)."""
    entry = _entry(name)
    if isinstance(entry, type):
        return cast(ProjectionClass, entry).open(settings, target)
    return cast(Factory, entry)(settings, target or settings.db_schema)
