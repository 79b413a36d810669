"""Redis calls of the read models, with connection failures translated at this edge into
the transient StoreUnavailable (which the projector runtime retries)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar


from ledger.connections import REDIS_TRANSIENT, RedisClient
from ledger.errors import StoreUnavailable

__all__ = ["call", "pipelined"]

T = TypeVar("T")


def call(action: Callable[[], T], what: str) -> T:
    """Run one Redis call, translating connection failures into the transient StoreUnavailable."""
    try:
        return action()
    except REDIS_TRANSIENT as e:
        raise StoreUnavailable(f"Redis is unreachable ({what}): {e}") from e


def pipelined(client: RedisClient, fill: Callable[[Any], object], what: str) -> list[Any]:
    """Run the commands `fill(pipe)` queues in one round trip; their replies."""
    def run() -> list[Any]:
        with client.pipeline(transaction=False) as pipe:
            fill(pipe)
            return pipe.execute()
    return call(run, what)
