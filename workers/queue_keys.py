"""The workers' own keys on the ledger's Redis: the session queue's lengths, the daily counters,
the heartbeats. The only module of `workers` (besides the dramatiq adapter, `broker`,
`actors` and `supervisor`) that talks to Redis.

Key names are `workers.broker.WorkerKeys`'; dramatiq lays out a queue `Q` as the list `Q`
(ready message ids), the hash `Q.msgs` (every stored message: ready or fetched by a
consumer), `Q.DQ.msgs` (delayed for a retry's backoff) and the sorted set `Q.XQ` (dead).
A lost connection is `StoreUnavailable`, as it is at the ledger's edge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
import redis

from ledger.connections import RedisClient
from ledger.errors import StoreUnavailable
from ledger.eventlog import EventLog

from .broker import SESSIONS_QUEUE, WorkerKeys

__all__ = ["DRIVER_ERRORS", "QueueDepth", "WorkerRedis"]

#: Every error the driver raises: for a best-effort read that reports "unknown" instead of
#: failing its caller (an ingest's queue position).
DRIVER_ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)


@dataclass(frozen=True)
class QueueDepth:
    ready: int
    in_flight: int | None  # fetched by a consumer, not yet acked; None: the broker does not tell (RabbitMQ)
    delayed: int  # waiting for a retry's backoff
    dead: int  # dramatiq's dead letters (kept for a week)


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise StoreUnavailable(f"Redis is unreachable ({what}): {e}") from e


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class WorkerRedis:
    """The workers' keys of one namespace, on one client (the ledger's: `EventLog.redis_client_for_workers`)."""

    def __init__(self, client: RedisClient, namespace: str):
        self.client, self.keys = client, WorkerKeys(namespace)

    @classmethod
    def at(cls, url: str, namespace: str) -> WorkerRedis:
        """The workers' keys of `namespace` on the Redis at `url` (a separate broker Redis)."""
        return cls(redis.Redis.from_url(url), namespace)

    @classmethod
    def of(cls, log: EventLog) -> WorkerRedis:
        """The workers' keys beside `log`, on its server."""
        return cls(log.redis_client_for_workers(), log.namespace)

    def depth(self, queue: str = SESSIONS_QUEUE) -> QueueDepth:
        """How many of `queue`'s messages are ready, fetched by a consumer, delayed and dead."""
        name = self.keys.queue(queue)
        with _unavailable(f"reading the {queue} queue"), self.client.pipeline(transaction=False) as pipe:
            pipe.llen(name)
            pipe.hlen(f"{name}.msgs")
            pipe.hlen(f"{name}.DQ.msgs")
            pipe.zcard(f"{name}.XQ")
            ready, stored, delayed, dead = (int(x) for x in pipe.execute())
        return QueueDepth(ready, max(0, stored - ready), delayed, dead)

    def count_day(self, what: str, at: datetime | None = None) -> None:
        """Add one to the `what` ("processed", "failed") counter of `at`'s UTC day (today)."""
        day = (at or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
        with _unavailable(f"counting a {what} session"):
            self.client.hincrby(self.keys.daily, f"{day}:{what}", 1)

    def daily(self) -> dict[str, int]:
        """Every daily counter: "<YYYY-MM-DD>:processed|failed" -> sessions."""
        with _unavailable("reading the daily counters"):
            raw = self.client.hgetall(self.keys.daily)
        return {_text(name): int(value) for name, value in raw.items()}

    def heartbeats(self) -> dict[str, bytes | str]:
        """Every worker's last heartbeat: worker id -> its JSON record (see `workers.broker.Heartbeat`)."""
        with _unavailable("reading heartbeats"):
            raw = self.client.hgetall(self.keys.heartbeats)
        return {_text(worker): record for worker, record in raw.items()}

    def forget_heartbeats(self, workers: Sequence[str]) -> None:
        """Remove these workers' heartbeats."""
        if workers:
            with _unavailable("removing stale heartbeats"):
                self.client.hdel(self.keys.heartbeats, *workers)
