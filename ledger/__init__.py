"""The log: events, codec, upcasters, the Redis-Stream ledger, settings and connections."""

from __future__ import annotations

from .errors import LedgerError
from .events import Event, Position, RecordedEvent
from .log import Append, Receipt, RedisEventLog
from .settings import Settings

__all__ = ["Append", "Event", "LedgerError", "Position", "Receipt", "RecordedEvent", "RedisEventLog",
           "Settings", "open_log"]


def open_log(settings: Settings) -> RedisEventLog:
    """The configured ledger, after checking that Redis is durable and the layout matches."""
    from .connections import connect_redis
    from .durability import ensure_durable

    client = connect_redis(settings)
    ensure_durable(client, settings.allow_volatile)
    log = RedisEventLog(client, settings.namespace, settings.partitions, settings.idempotency_ttl_seconds)
    log.check_layout()
    return log
