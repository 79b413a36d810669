"""The dramatiq broker (Redis or RabbitMQ), the queue and actor names, and the workers' keys.

Which broker (`MEMLEDGER_BROKER_URL`, see `broker_kind`):
- unset: dramatiq's Redis broker on the ledger's own Redis (the default);
- `redis://` / `rediss://` / `unix://`: dramatiq's Redis broker on that separate plain Redis;
- `amqp://` / `amqps://`: RabbitMQ (`workers.rabbitmq`), with the namespace in the queue names.
A Redis Cluster cannot carry dramatiq's Redis broker (its scripts read keys of one queue
that a cluster may spread over slots); a cluster ledger with no broker URL, or a cluster
broker URL, is refused with `BrokerRequired` before anything starts.

Choices:
- Dramatiq's keys live under `{<ns>}:dramatiq:<queue>`: the broker namespace carries the
  ledger namespace as a Redis Cluster hash tag, so dramatiq's dispatch.lua (which touches
  several keys per call) stays on one slot, and two namespaces on one Redis never share
  a queue. Queue names themselves stay short (`sessions`, `maintenance`).
- Producers (the enqueuer, the CLI, tests) build messages by actor name with
  `make_broker()` and never import `workers.actors`, so they need no global broker.
- A consumer killed with SIGKILL leaves its fetched messages un-acked; dramatiq's queue
  maintenance gives them back once the consumer's heartbeat is older than
  `worker_heartbeat_timeout_ms`, which is why both it and the maintenance chance are
  settings rather than dramatiq's defaults (60 s, 0.1%).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dramatiq
import orjson
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from ledger.connections import RedisClient, redis_url
from ledger.errors import BrokerRequired, ConfigurationError, StoreUnavailable
from ledger.settings import Settings

SESSIONS_QUEUE = "sessions"
MAINTENANCE_QUEUE = "maintenance"
QUEUES = (SESSIONS_QUEUE, MAINTENANCE_QUEUE)
PROCESS_SESSION = "process_session"
SESSION_FAILED = "session_failed"
RUN_MAINTENANCE = "run_maintenance"


@dataclass(frozen=True)
class WorkerKeys:
    """Redis keys of the workers of one namespace (all under the `{<ns>}` hash tag)."""

    namespace: str

    @property
    def dramatiq(self) -> str:
        return f"{{{self.namespace}}}:dramatiq"

    def queue(self, name: str) -> str:
        return f"{self.dramatiq}:{name}"

    @property
    def heartbeats(self) -> str:
        """Hash: worker id -> JSON {role, host, pid, started_at, at, processed, failed}."""
        return f"{{{self.namespace}}}:worker:heartbeats"

    @property
    def daily(self) -> str:
        """Hash: "<YYYY-MM-DD>:processed|failed" -> sessions counted that (UTC) day."""
        return f"{{{self.namespace}}}:worker:daily"

    @property
    def maintenance(self) -> str:
        """String with a TTL: whoever sets it schedules this round of expiry and retention."""
        return f"{{{self.namespace}}}:worker:maintenance"


#: URL schemes of a Redis Cluster (the ledger's, or a broker URL's): no dramatiq broker there.
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
RABBITMQ_SCHEMES = ("amqp://", "amqps://")
BrokerKind = Literal["redis", "rabbitmq"]


def broker_kind(settings: Settings) -> BrokerKind:
    """Which dramatiq broker the settings select; BrokerRequired when only a Redis Cluster is at hand."""
    url = settings.broker_url
    if url is None and redis_url(settings).startswith(CLUSTER_SCHEMES):
        raise BrokerRequired("the ledger's Redis is a cluster (MEMLEDGER_REDIS_URL), where dramatiq's Redis broker "
                             "cannot run: set MEMLEDGER_BROKER_URL to RabbitMQ (amqp://user:pass@host:5672/) or "
                             "to a plain Redis (redis://host:6379/0)")
    if url is None or url.startswith(REDIS_SCHEMES):
        return "redis"
    if url.startswith(RABBITMQ_SCHEMES):
        return "rabbitmq"
    if url.startswith(CLUSTER_SCHEMES):
        raise BrokerRequired(f"MEMLEDGER_BROKER_URL {_safe(url)} is a Redis Cluster, where dramatiq's Redis broker "
                             "cannot run: point it at RabbitMQ (amqp://...) or at a plain Redis (redis://...)")
    raise ConfigurationError(f"MEMLEDGER_BROKER_URL {_safe(url)} has an unknown scheme: use amqp:// or amqps:// "
                             "(RabbitMQ), redis://, rediss:// or unix:// (a plain Redis), or unset it (the ledger's Redis)")


def _safe(url: str) -> str:
    """`url` without its password, for an error message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{userinfo.split(':')[0]}:***@{host}" if at else url


def queue_name(settings: Settings, queue: str) -> str:
    """The broker's name of the logical `queue` (`sessions`): the namespace is in it on RabbitMQ only."""
    from .rabbitmq import physical_queue

    return physical_queue(settings.namespace, queue) if broker_kind(settings) == "rabbitmq" else queue


def make_broker(settings: Settings, middleware: Sequence[Middleware] = ()) -> dramatiq.Broker:
    """The dramatiq broker the settings select (see the module docstring), with `middleware` added."""
    broker: dramatiq.Broker
    if broker_kind(settings) == "rabbitmq":
        from .rabbitmq import NamespacedRabbitmqBroker

        broker = NamespacedRabbitmqBroker(settings.namespace, str(settings.broker_url))
    else:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.broker_url or redis_url(settings), namespace=WorkerKeys(settings.namespace).dramatiq,
            heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
            maintenance_chance=settings.worker_maintenance_chance)
    for extra in middleware:
        broker.add_middleware(extra)
    return broker


def message(queue: str, actor: str, kwargs: dict[str, Any], message_id: str | None = None) -> dramatiq.Message[Any]:
    """A message for `actor`, built without the actor being declared in this process."""
    built: dramatiq.Message[Any] = dramatiq.Message(queue_name=queue, actor_name=actor, args=(), kwargs=kwargs,
                                                    options={})
    return built if message_id is None else built.copy(message_id=message_id)


def enqueue(broker: dramatiq.Broker, built: dramatiq.Message[Any], who: str) -> None:
    """Put one message on its queue; the broker out of reach is StoreUnavailable (which the
    projector runtime retries), naming `who` was enqueueing."""
    from .rabbitmq import DRIVER_ERRORS as RABBITMQ_ERRORS

    try:
        broker.enqueue(built)
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise StoreUnavailable(f"{who}: Redis is unreachable while enqueueing: {e}") from e
    except RABBITMQ_ERRORS as e:
        raise StoreUnavailable(f"{who}: RabbitMQ is unreachable while enqueueing: {e!r}") from e


class Heartbeat(Middleware):
    """Each worker process reports itself every `interval_s` in `WorkerKeys.heartbeats`.

    A clean shutdown removes the entry; a killed process leaves it to go stale, which
    `memledger worker status` shows.
    """

    def __init__(self, client: RedisClient, keys: WorkerKeys, interval_s: float, role: str = "dramatiq"):
        self.client, self.keys, self.interval_s, self.role = client, keys, interval_s, role
        self.worker_id = f"{role}:{socket.gethostname()}:{os.getpid()}"
        self.started_at = time.time()
        self.processed = self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # A fork inherits the parent's id; the worker process reports under its own pid.
        self.worker_id = f"{self.role}:{socket.gethostname()}:{os.getpid()}"
        self._thread = threading.Thread(target=self._run, name="memledger-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.client.hdel(self.keys.heartbeats, self.worker_id)
        except redis.RedisError:
            pass  # going away anyway; the entry goes stale

    def beat(self) -> None:
        with self._lock:
            record = {"role": self.role, "host": socket.gethostname(), "pid": os.getpid(),
                      "started_at": self.started_at, "at": time.time(),
                      "processed": self.processed, "failed": self.failed}
        self.client.hset(self.keys.heartbeats, self.worker_id, orjson.dumps(record))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError:
                pass  # Redis is away; the next beat says we are still here
            self._stop.wait(self.interval_s)

    # dramatiq hooks -------------------------------------------------------------------

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop()

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        with self._lock:
            if exception is None:
                self.processed += 1
            else:
                self.failed += 1


__all__ = ["CLUSTER_SCHEMES", "MAINTENANCE_QUEUE", "PROCESS_SESSION", "QUEUES", "RUN_MAINTENANCE", "SESSIONS_QUEUE", "SESSION_FAILED",
           "BrokerKind", "Heartbeat", "WorkerKeys", "broker_kind", "enqueue", "make_broker", "message", "queue_name"]
