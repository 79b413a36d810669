"""The read models by name: each name maps to its projection class (`ProjectionClass`).

A class answers what replay needs without opening anything (its version, its rebuild
target: `shadow`), and opens itself on the configured servers (`open`). Later read models
register their class here; `replay` rebuilds exactly what is registered.
"""

from __future__ import annotations

from ledger.errors import ConfigurationError
from ledger.settings import Settings

from .base import Projection, ProjectionClass
from .postgres.api_keys import ApiKeysProjection
from .postgres.archive import ArchiveProjection
from .postgres.conversations import ConversationsProjection
from .postgres.embeddings import EmbeddingsProjection
from .postgres.memories import MemoriesProjection
from .redis import REDIS_PROJECTIONS

__all__ = ["PROJECTIONS", "VECTOR_PROJECTIONS", "open_projection", "projection_class"]

PROJECTIONS: dict[str, ProjectionClass] = {
    ArchiveProjection.name: ArchiveProjection,
    MemoriesProjection.name: MemoriesProjection,
    ApiKeysProjection.name: ApiKeysProjection,
    ConversationsProjection.name: ConversationsProjection,
    **{cls.name: cls for cls in REDIS_PROJECTIONS},
}

#: Read models that need the pgvector extension: run, rebuilt and verified by name (and by
#: `memledger up` where the database has the extension), not among those every tool iterates.
VECTOR_PROJECTIONS: dict[str, ProjectionClass] = {EmbeddingsProjection.name: EmbeddingsProjection}


def projection_class(name: str) -> ProjectionClass:
    """The class registered as `name`; nothing is opened."""
    try:
        return PROJECTIONS.get(name) or VECTOR_PROJECTIONS[name]
    except KeyError:
        known = ", ".join(sorted([*PROJECTIONS, *VECTOR_PROJECTIONS]))
        raise ConfigurationError(f"no projection named {name!r}; known: {known}") from None


def open_projection(name: str, settings: Settings, target: str | None = None) -> Projection:
    """Open read model `name`; `target` overrides where it writes (a rebuild's shadow)."""
    return projection_class(name).open(settings, target)
