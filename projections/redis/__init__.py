"""The Redis read models: trending, analytics, activity (feed + notifications), the query cache.

Each projection applies a batch and its checkpoint in one Lua script on the partition's
hash slot (see `base`); queries merge the partitions client-side, pipelined.
"""

from __future__ import annotations

from .activity import ActivityFeed, ActivityProjection, watch
from .analytics import Analytics, AnalyticsProjection, AnalyticsReport
from .base import RedisProjection
from .recent_messages import RecentMessagesCache, RecentMessagesProjection
from .cache import CachedMemoryStore, QueryCache, attach_query_cache, cache_stats, invalidate_all, open_cached_store
from .trending import Trending, TrendingProjection, TrendingReport

__all__ = ["REDIS_PROJECTIONS", "ActivityFeed", "ActivityProjection", "Analytics", "AnalyticsProjection",
           "AnalyticsReport", "CachedMemoryStore", "QueryCache", "RecentMessagesCache",
           "RecentMessagesProjection", "RedisProjection", "Trending",
           "TrendingProjection", "TrendingReport", "attach_query_cache", "cache_stats", "invalidate_all",
           "open_cached_store", "watch"]

REDIS_PROJECTIONS: tuple[type[RedisProjection], ...] = (
    TrendingProjection, AnalyticsProjection, ActivityProjection, RecentMessagesProjection)

