"""Projector runtime, read models and the query API."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ledger.lazy import lazy_names

from ledger import Settings

from .base import DeadLetter, FencedOut, Projection, ProjectionClass

if TYPE_CHECKING:
    from .postgres.memory_store import MemoryStore
    from .query import MemoryQuery, NotFound, QueryResult
    from .registry import PROJECTIONS, open_projection, projection_class
    from .runtime import Projector, ProjectorOptions, RunStats

__all__ = ["PROJECTIONS", "DeadLetter", "FencedOut", "MemoryQuery", "MemoryStore", "NotFound", "Projection",
           "ProjectionClass", "Projector", "ProjectorOptions", "QueryResult", "RunStats", "open_memory_store",
           "open_projection", "projection_class", "run_projection"]

# The runtime, the registry and the memory store import redis and psycopg: resolved on
# first use, so importing the folds loads no driver (PEP 562).
_LAZY = {"MemoryQuery": ".query", "NotFound": ".query", "QueryResult": ".query",
         "MemoryStore": ".postgres.memory_store",
         "PROJECTIONS": ".registry", "open_projection": ".registry", "projection_class": ".registry",
         "Projector": ".runtime", "ProjectorOptions": ".runtime", "RunStats": ".runtime"}

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise type any unknown name as Any
    __getattr__ = lazy_names(__name__, _LAZY, globals())


def run_projection(settings: Settings, name: str, until_caught_up: bool = False, stop: threading.Event | None = None,
                   on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
    """Run projection `name` over every partition whose lease this process can take."""
    from ledger import open_log

    from .lease import Leases
    from .registry import open_projection
    from .runtime import Projector, ProjectorOptions

    log = open_log(settings)
    projection = open_projection(name, settings)
    leases = Leases.open(settings, name)
    options = ProjectorOptions(batch=settings.projector_batch, lease_ttl_ms=settings.lease_ttl_ms,
                               appliers=settings.projector_appliers)
    try:
        return Projector(log, projection, leases, options).run(stop, until_caught_up, on_batch)
    finally:
        projection.close()
        leases.close()


def open_memory_store(settings: Settings) -> MemoryStore:
    from ledger.connections import database_url

    from .postgres.memory_store import open_store

    return open_store(database_url(settings), settings.db_schema)
