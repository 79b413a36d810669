"""The log: events, codec, upcasters, the EventLog role and its Redis-Stream ledger, settings and connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import LedgerError
from .eventlog import Append, EventLog, Receipt, Subject, SubjectState, Trimmed
from .events import Event, Position, RecordedEvent
from .lazy import lazy_names
from .settings import Settings

if TYPE_CHECKING:
    from .log import RedisEventLog

__all__ = ["Append", "Event", "EventLog", "LedgerError", "Position", "Receipt", "RecordedEvent", "RedisEventLog",
           "Settings", "Subject", "SubjectState", "Trimmed", "open_log"]

# Names whose modules import a driver: resolved on first use, so importing the pure
# modules (events, codec, upcasting, the EventLog role) through this package loads no redis (PEP 562).
_LAZY = {"RedisEventLog": ".log"}

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise type any unknown name as Any
    __getattr__ = lazy_names(__name__, _LAZY, globals())


def open_log(settings: Settings) -> RedisEventLog:
    """The configured ledger, after checking that Redis is durable and the layout matches."""
    from .connections import connect_redis
    from .durability import ensure_durable
    from .log import RedisEventLog

    client = connect_redis(settings)
    ensure_durable(client, settings.allow_volatile)
    log = RedisEventLog(client, settings.namespace, settings.partitions, settings.idempotency_ttl_seconds)
    log.check_layout()
    return log
