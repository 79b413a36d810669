"""Projector runtime, read models and the query API."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ledger import Settings, open_log

from .base import FencedOut, Projection
from .lease import Leases
from .query import MemoryQuery, MemoryStore, NotFound, QueryResult
from .registry import PROJECTIONS, open_projection
from .runtime import Projector, ProjectorOptions, RunStats

__all__ = ["PROJECTIONS", "FencedOut", "MemoryQuery", "MemoryStore", "NotFound", "Projection", "Projector",
           "ProjectorOptions", "QueryResult", "RunStats", "open_memory_store", "open_projection", "run_projection"]


def run_projection(settings: Settings, name: str, until_caught_up: bool = False, stop: threading.Event | None = None,
                   on_batch: Callable[[RunStats], None] | None = None) -> RunStats:
    """Run projection `name` over every partition whose lease this process can take."""
    log = open_log(settings)
    projection = open_projection(name, settings)
    leases = Leases(log.client, log.keys, name, settings.lease_ttl_ms)
    options = ProjectorOptions(batch=settings.projector_batch, lease_ttl_ms=settings.lease_ttl_ms)
    try:
        return Projector(log, projection, leases, options).run(stop, until_caught_up, on_batch)
    finally:
        projection.close()


def open_memory_store(settings: Settings) -> MemoryStore:
    from ledger.connections import database_url

    from .query import open_store

    return open_store(database_url(settings), settings.db_schema)
