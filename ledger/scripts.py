"""Lua scripts run by SHA, pipelined without redis-py's extra SCRIPT EXISTS round trip."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import redis
from redis.exceptions import NoScriptError

from .errors import StoreUnavailable

Call = tuple[Sequence[str], Sequence[Any]]


class LuaScript:
    """One script from `<package>/lua/`; `run_many` sends many calls in one round trip."""

    def __init__(self, client: redis.Redis, name: str, package: str = "ledger"):
        self.client, self.name = client, name
        self.source = (files(package) / "lua" / name).read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self.run_many([(keys, args)])[0]

    def run_many(self, calls: Sequence[Call]) -> list[Any]:
        try:
            replies = self._send(calls, list(range(len(calls))), [None] * len(calls))
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                # The server lost its script cache (restart, SCRIPT FLUSH). A NOSCRIPT
                # reply means that call did nothing, so loading and resending it is safe.
                self.client.script_load(self.source)
                replies = self._send(calls, missing, replies)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(f"Redis is unreachable running {self.name}: {e}") from e
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _send(self, calls: Sequence[Call], which: list[int], replies: list[Any]) -> list[Any]:
        # A pipeline written call by call rather than packed whole first: the server runs
        # call k while the client is still packing call k+1 (the batch is one round trip
        # either way). Replies are read in order; a reply error stays in its slot.
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            for i in which:
                keys, args = calls[i]
                conn.send_command("EVALSHA", self.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
            for i in which:
                try:
                    replies[i] = conn.read_response()
                except redis.ResponseError as e:
                    replies[i] = e
        except BaseException:
            # Replies may be left unread: never hand this connection out again.
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(conn)
        return replies
