"""A query-cache hit answered on an asyncio event loop (the HTTP server's), without a worker thread.

A cached `GET /v1/memories` costs the App one Redis call; served through a worker thread it
also paid two thread switches, which cost more than the call itself once the machine is busy.
`CacheProbe` runs cache_lookup.lua's `probe` on an asyncio Redis connection of the server's
own. A fresh hit is the answer; anything else (a miss, a scope in flight, an expired row, Redis
unreachable, a script the server lost, a Redis Cluster URL) answers None and the request goes
on to the thread path, whose `get` counts the miss and computes the rows. The probe counts
hits only, so the cache's statistics see each request once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
import redis.asyncio

from ledger.connections import redis_url
from ledger.settings import Settings

if TYPE_CHECKING:
    from ..query import MemoryQuery, Row
    from .cache import QueryCache

__all__ = ["CacheProbe"]

#: URL schemes the probe's client speaks (a cluster's slots are the thread path's business).
_PLAIN = ("redis://", "rediss://", "unix://")


class CacheProbe:
    """One asyncio Redis client per server, opened on first use inside the server's loop."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: redis.asyncio.Redis | None = None
        self._sha: str | None = None
        self.enabled = True

    async def rows(self, cache: QueryCache, query: MemoryQuery) -> list[Row] | None:
        """The rows `cache` holds fresh for `query` (already scoped), or None to go the thread path."""
        if not self.enabled:
            return None
        keys, args = cache.probe_call(query)
        try:
            client = self._connect()
            if client is None:
                return None
            reply = await client.evalsha(cache.script_sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return None  # the thread path's `get` loads the script again
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return None  # the thread path answers BYPASS with the error, as for any query
        return cache.fresh_rows(reply)

    def _connect(self) -> redis.asyncio.Redis | None:
        if self._client is None:
            url = redis_url(self.settings)
            if not url.startswith(_PLAIN):
                self.enabled = False
                return None
            self._client = redis.asyncio.Redis.from_url(url, health_check_interval=30)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
