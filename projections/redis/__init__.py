"""The Redis read models: trending, analytics, activity (feed + notifications), the query cache.

Each projection applies a batch and its checkpoint in one Lua script on the partition's
hash slot (see `base`); queries merge the partitions client-side, pipelined.
"""

from __future__ import annotations

from typing import Any

from ledger.settings import Settings

from .activity import ActivityFeed, ActivityProjection, watch
from .analytics import Analytics, AnalyticsProjection, AnalyticsReport
from .base import RedisProjection
from .cache import CachedMemoryStore, QueryCache, attach_query_cache, cache_stats, invalidate_all, open_cached_store
from .trending import Trending, TrendingProjection, TrendingReport

__all__ = ["REDIS_PROJECTIONS", "ActivityFeed", "ActivityProjection", "Analytics", "AnalyticsProjection",
           "AnalyticsReport", "CachedMemoryStore", "QueryCache", "RedisProjection", "Trending",
           "TrendingProjection", "TrendingReport", "attach_query_cache", "cache_stats", "invalidate_all",
           "open_cached_store", "redis_factory", "watch"]

REDIS_PROJECTIONS: tuple[type[RedisProjection], ...] = (TrendingProjection, AnalyticsProjection, ActivityProjection)


def redis_factory(cls: type[RedisProjection]) -> Any:
    """The registry factory of a Redis projection: `target` is a key label (a rebuild's
    generation), except the default target (the namespace's schema name), which opens the
    live projection that follows the pointers."""
    def factory(settings: Settings, target: str) -> RedisProjection:
        return cls.open(settings, None if target == settings.db_schema else target)
    return factory
