"""The per-organisation token bucket behind the command gate (Redis-backed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .connections import RedisClient, is_cluster
from .partitions import Keys
from .scripts import LuaScript


class RateLimiter:
    def __init__(self, client: RedisClient, keys: Keys, rate: float, burst: int):
        self.client, self.keys, self.rate, self.burst = client, keys, rate, burst
        self._take = LuaScript(client, "rate_limit.lua")
        self._left: dict[str, int] = {}

    def take(self, wanted: Mapping[str, int]) -> dict[str, tuple[int, float]]:
        """Per org: (commands granted, seconds until the next would pass). One round trip.
        What each bucket kept is noted for `last_left`."""
        replies = self._take.run_many(
            [([self.keys.rate(org)], [self.rate, self.burst, count]) for org, count in wanted.items()])
        self._left.update({org: int(left) for org, (_, _, left) in zip(wanted, replies)})
        return {org: (int(g), int(ms) / 1000) for org, (g, ms, _) in zip(wanted, replies)}

    def last_left(self, org: str) -> tuple[int, float] | None:
        """The org's bucket as this limiter's last `take` left it, once (None: no take since the
        last call): (whole tokens left, seconds until it is full again). Saves a `peek` when a
        caller reports the bucket right after sending."""
        left = self._left.pop(org, None)
        return None if left is None else (left, (self.burst - left) / self.rate)

    def peek(self, org: str) -> tuple[int, float]:
        """The org's bucket now, taking nothing: (whole tokens left, seconds until it is full again).
        One round trip; refilled the way rate_limit.lua refills it, by the server's clock."""
        (seconds, micros), (tokens, ts) = self._clock_and_bucket(self.keys.rate(org))
        now = int(seconds) * 1000 + int(micros) // 1000
        left = self.burst if tokens is None else float(tokens) + (now - float(ts or now)) * self.rate / 1000
        left = min(float(self.burst), left)
        return int(left), (self.burst - left) / self.rate

    def _clock_and_bucket(self, key: str) -> tuple[Any, Any]:
        """The server's TIME and the bucket, from the server holding the bucket (whose clock the
        script refills by). A cluster pipeline refuses TIME: there it is two round trips."""
        if is_cluster(self.client):
            node = self.client.get_node_from_key(key)  # type: ignore[no-untyped-call]
            return self.client.time(target_nodes=node), self.client.hmget(key, "tokens", "ts")
        with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hmget(key, "tokens", "ts")
            clock, bucket = pipe.execute()
        return clock, bucket
