"""The dramatiq broker on RabbitMQ (`MEMLEDGER_BROKER_URL=amqp://...`), for when the ledger's
Redis cannot carry dramatiq's queues (a Redis Cluster: dramatiq's Redis broker keeps a queue's
keys under one prefix that its scripts read together, which a cluster cannot promise).

Choices:
- RabbitMQ has no key prefix to hide a namespace in, so the namespace goes into the queue
  names: the logical queue `sessions` of namespace `ml` is the RabbitMQ queue `ml.sessions`
  (plus dramatiq's `ml.sessions.DQ` for retries' backoff and `ml.sessions.XQ` for the dead).
  The broker maps names at its edge (declaring a queue, enqueueing a message), so actors and
  producers keep the short names and two namespaces on one RabbitMQ never share a queue.
  The mapping is idempotent: dramatiq re-enqueues a consumed message (a retry, a delayed
  message whose time has come) under the name it carries, which is already the full one.
- A consumer that dies un-acked (SIGKILL) loses its AMQP connection, and RabbitMQ puts what it
  held back on the queue at once: no heartbeat timeout as on Redis.
- What AMQP does not tell: how many messages consumers hold un-acked (the queue's count is of
  ready ones only). `QueueDepth.in_flight` is None on RabbitMQ (the management plugin's HTTP
  API would know; this project does not depend on it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from ledger.errors import StoreUnavailable

from .broker import SESSIONS_QUEUE
from .queue_keys import QueueDepth

__all__ = ["DRIVER_ERRORS", "NamespacedRabbitmqBroker", "RabbitQueues", "physical_queue"]

#: Every error pika raises (a lost or refused connection, a closed channel).
DRIVER_ERRORS: tuple[type[Exception], ...] = (pika.exceptions.AMQPError,)


def physical_queue(namespace: str, queue: str) -> str:
    """The RabbitMQ name of `queue` in `namespace` (unchanged if it already is one)."""
    prefix = f"{namespace}."
    return queue if queue.startswith(prefix) else prefix + queue


class NamespacedRabbitmqBroker(RabbitmqBroker):
    """dramatiq's RabbitMQ broker, with every queue name prefixed by the namespace."""

    def __init__(self, namespace: str, url: str, **options: Any):
        self.namespace = namespace
        super().__init__(url=url, **options)

    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        super().declare_queue(physical_queue(self.namespace, queue_name), ensure=ensure)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        named = message.copy(queue_name=physical_queue(self.namespace, message.queue_name))
        enqueued: dramatiq.Message[Any] = super().enqueue(named, delay=delay)
        return enqueued


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    try:
        yield
    except DRIVER_ERRORS as e:
        raise StoreUnavailable(f"RabbitMQ is unreachable ({what}): {e}") from e


class RabbitQueues:
    """The queues of one namespace on RabbitMQ: their depth, and deleting them (tests, the bench)."""

    def __init__(self, url: str, namespace: str):
        self.url, self.namespace = url, namespace

    @contextmanager
    def _connection(self, what: str) -> Iterator[Any]:
        with _unavailable(what):
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            try:
                yield connection
            finally:
                if connection.is_open:
                    connection.close()

    def _names(self, queue: str) -> tuple[str, str, str]:
        name = physical_queue(self.namespace, queue)
        return name, f"{name}.DQ", f"{name}.XQ"

    def depth(self, queue: str = SESSIONS_QUEUE) -> QueueDepth:
        """Ready, delayed (retry backoff) and dead messages of `queue`; in flight is unknown (None).
        A queue no worker has declared yet counts as empty (a passive declare never creates it)."""
        with self._connection(f"reading the {queue} queue") as connection:
            ready, delayed, dead = (self._count(connection, name) for name in self._names(queue))
        return QueueDepth(ready, None, delayed, dead)

    @staticmethod
    def _count(connection: Any, name: str) -> int:
        # A channel per queue: RabbitMQ closes the channel of a passive declare that fails.
        try:
            return int(connection.channel().queue_declare(queue=name, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
            return 0

    def delete(self, queues: tuple[str, ...]) -> None:
        """Delete these logical queues of the namespace, with their delay and dead-letter queues."""
        with self._connection("deleting queues") as connection:
            channel = connection.channel()
            for queue in queues:
                for name in self._names(queue):
                    channel.queue_delete(queue=name)
