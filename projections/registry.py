"""The read models by name, and how to open one on the configured servers."""

from __future__ import annotations

from collections.abc import Callable

from ledger.connections import database_url
from ledger.settings import Settings

from .base import Projection
from .postgres.archive import ArchiveProjection
from .postgres.memories import MemoriesProjection
from .redis import REDIS_PROJECTIONS, attach_query_cache, redis_factory

Factory = Callable[[Settings, str], Projection]

# name -> factory(settings, schema-or-key-version). Later read models register here.
PROJECTIONS: dict[str, Factory] = {
    "archive": lambda s, schema: ArchiveProjection(database_url(s), schema),
    "memories": lambda s, schema: _memories(s, schema),
    # Redis read models: `target` is a key label; the default (the schema name) is the live one.
    **{cls.name: redis_factory(cls) for cls in REDIS_PROJECTIONS},
}


def _memories(settings: Settings, schema: str) -> MemoriesProjection:
    projection = MemoriesProjection(database_url(settings), schema)
    if schema == settings.db_schema:  # the live tables: their commits invalidate the query cache
        attach_query_cache(projection, settings, schema)
    return projection


def open_projection(name: str, settings: Settings, target: str | None = None) -> Projection:
    """Open read model `name`; `target` overrides where it writes (a rebuild's shadow)."""
    from ledger.errors import ConfigurationError

    try:
        factory = PROJECTIONS[name]
    except KeyError:
        raise ConfigurationError(f"no projection named {name!r}; known: {', '.join(sorted(PROJECTIONS))}") from None
    return factory(settings, target or settings.db_schema)
