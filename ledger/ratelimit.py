"""The per-organisation token bucket behind the command gate (Redis-backed)."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from .partitions import Keys
from .scripts import LuaScript


class RateLimiter:
    def __init__(self, client: redis.Redis, keys: Keys, rate: float, burst: int):
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
        with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hmget(self.keys.rate(org), "tokens", "ts")
            (seconds, micros), (tokens, ts) = pipe.execute()
        now = int(seconds) * 1000 + int(micros) // 1000
        left = self.burst if tokens is None else float(tokens) + (now - float(ts or now)) * self.rate / 1000
        left = min(float(self.burst), left)
        return int(left), (self.burst - left) / self.rate
