"""The depth of the workers' queues on whichever broker the settings select.

On Redis it is read from dramatiq's keys (`workers.queue_keys`), on RabbitMQ from passive
queue declarations (`workers.rabbitmq`, where the messages consumers hold are not told:
`QueueDepth.in_flight` is None). The daily counters and the heartbeats stay on the ledger's
Redis whichever the broker: they are the workers' own keys, not the broker's.
"""

from __future__ import annotations

from typing import Protocol

from ledger.eventlog import EventLog
from ledger.settings import Settings

from .broker import SESSIONS_QUEUE, broker_kind
from .queue_keys import QueueDepth, WorkerRedis

__all__ = ["QueueReader", "queue_reader"]


class QueueReader(Protocol):
    def depth(self, queue: str = SESSIONS_QUEUE) -> QueueDepth:
        """How many of `queue`'s messages are ready, in flight (None: not told), delayed and dead."""
        ...


def queue_reader(settings: Settings | None, log: EventLog) -> QueueReader:
    """The queues of the broker `settings` select; without settings, dramatiq's keys beside `log`."""
    if settings is None or settings.broker_url is None:
        return WorkerRedis.of(log)
    if broker_kind(settings) == "rabbitmq":
        from .rabbitmq import RabbitQueues

        return RabbitQueues(settings.broker_url, settings.namespace)
    return WorkerRedis.at(settings.broker_url, settings.namespace)
