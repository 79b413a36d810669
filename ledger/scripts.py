"""Lua scripts run by SHA, pipelined without redis-py's extra SCRIPT EXISTS round trip.

On a Redis Cluster each call goes to the node holding its keys' slot. All keys of one call
must share a slot (the partition's hash tag sees to it; tests/test_cluster_slots.py checks
every script): a call whose keys do not is refused here, before anything is sent. The calls
of a batch are written to every node they go to first and read back after, so a batch over
three nodes still costs about one round trip.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from importlib.resources import files
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.connection import Connection, ConnectionPool
from redis.exceptions import AskError, NoScriptError

_hiredis_pack: Callable[[tuple[Any, ...]], Any] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # redis[hiredis] brings it; without it, redis-py's own packer
    _hiredis_pack = None

from .connections import REDIS_TRANSIENT, RedisClient
from .errors import ConfigurationError, StoreUnavailable

Call = tuple[Sequence[str], Sequence[Any]]
#: How often a batch is resent after the cluster said a slot moved (MOVED/ASK: a failover or
#: a resharding), each time after re-reading the slot map.
MOVED_RETRIES = 2


class LuaScript:
    """One script from `<package>/lua/`; `run_many` sends many calls in one round trip."""

    def __init__(self, client: RedisClient, name: str, package: str = "ledger"):
        self.client, self.name = client, name
        self.source = (files(package) / "lua" / name).read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self.run_many([(keys, args)])[0]

    def run_many(self, calls: Iterable[Call]) -> list[Any]:
        """Run the calls, one reply (or the error it raised) each, in order.

        On one server each call is sent as soon as `calls` yields it and the replies are read
        after the last, so a caller whose iterator prepares the next call (the command bus
        preparing its next chunk of commands) does so while the server runs the ones sent.
        If the iterator raises, the replies of the calls already sent are read first (they
        ran), then its error is raised. A cluster's calls are all taken first (grouped by node).
        """
        try:
            if isinstance(self.client, RedisCluster):
                replies = self._run_on_cluster(self.client, list(calls))
            else:
                replies = self._stream_to(self.client, calls)
        except REDIS_TRANSIENT as e:
            raise StoreUnavailable(f"Redis is unreachable running {self.name}: {e}") from e
        for reply in replies:
            if isinstance(reply, REDIS_TRANSIENT):  # a cluster's master is down: nothing ran
                raise StoreUnavailable(f"Redis could not run {self.name}: {reply}") from reply
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _stream_to(self, client: redis.Redis, calls: Iterable[Call]) -> list[Any]:
        pool = client.connection_pool
        conn = pool.get_connection()
        sent: list[Call] = []
        replies: list[Any] = []
        failure: BaseException | None = None
        try:
            try:
                for call in calls:
                    sent.append(call)
                    conn.send_packed_command(_pack(conn, self.sha, call[0], call[1]))  # type: ignore[no-untyped-call]
            except Exception as e:  # the caller's iterator: what was sent runs, so read it back
                failure = e
            for _ in sent:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as e:
                    replies.append(e)
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]  # replies may be left unread
            raise
        finally:
            pool.release(conn)
        if failure is not None:
            raise failure
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # the server lost its script cache: a NOSCRIPT call did nothing, so resend it
            client.script_load(self.source)
            self._send({pool: missing}, sent, replies)
        return replies

    def _run_on_cluster(self, cluster: RedisCluster, calls: Sequence[Call]) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(MOVED_RETRIES + 1):
            by_node: dict[str, list[int]] = defaultdict(list)
            for i in pending:
                node = cluster.get_node_from_key(self._slot_key(calls[i][0]))  # type: ignore[no-untyped-call]
                by_node[node.name].append(i)
            clients = {name: cluster.get_redis_connection(cluster.get_node(node_name=name))  # type: ignore[no-untyped-call]
                       for name in by_node}
            self._send({clients[name].connection_pool: which for name, which in by_node.items()}, calls, replies)
            for name, which in by_node.items():
                missing = [i for i in which if isinstance(replies[i], NoScriptError)]
                if missing:  # as in `_run_on`: that node lost its scripts, nothing ran
                    clients[name].script_load(self.source)
                    self._send({clients[name].connection_pool: missing}, calls, replies)
            pending = [i for i in pending if _moved(replies[i])]
            if not pending or attempt == MOVED_RETRIES:
                return replies
            # A MOVED/ASK reply ran nothing; the slot map changed (a failover): re-read it.
            cluster.nodes_manager.initialize()
        return replies

    def _slot_key(self, keys: Sequence[str]) -> str:
        slots = {key_slot(k.encode()) for k in keys}
        if len(slots) != 1:
            raise ConfigurationError(
                f"{self.name} was called with keys of {len(slots)} hash slots ({', '.join(keys)}); on a "
                "Redis Cluster one script call must touch one slot: give the keys one hash tag")
        return keys[0]

    def _send(self, work: dict[ConnectionPool, list[int]], calls: Sequence[Call], replies: list[Any]) -> None:
        # A pipeline written call by call rather than packed whole first: the server runs
        # call k while the client is still packing call k+1 (the batch is one round trip
        # either way). Every server's calls are written before any reply is read, so servers
        # of a cluster work in parallel. Replies are read in order; a reply error stays in its slot.
        held: list[tuple[ConnectionPool, Connection, list[int]]] = []
        try:
            for pool, which in work.items():
                conn = pool.get_connection()
                held.append((pool, conn, which))
                for i in which:
                    keys, args = calls[i]
                    conn.send_packed_command(_pack(conn, self.sha, keys, args))  # type: ignore[no-untyped-call]
            for _, conn, which in held:
                for i in which:
                    try:
                        replies[i] = conn.read_response()
                    except redis.ResponseError as e:
                        replies[i] = e
        except BaseException:
            # Replies may be left unread: never hand these connections out again.
            for _, conn, _ in held:
                conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            for pool, conn, _ in held:
                pool.release(conn)


def _pack(conn: Connection, sha: str, keys: Sequence[str], args: Sequence[Any]) -> list[bytes]:
    """One EVALSHA in the wire format: hiredis packs str, bytes, int and float itself, the same
    bytes redis-py writes after encoding each argument in Python (a sixth of the command
    path's CPU went there: an append passes about ten arguments per command)."""
    command = ("EVALSHA", sha, len(keys), *keys, *args)
    if _hiredis_pack is not None:
        try:
            return [bytes(_hiredis_pack(command))]  # send_packed_command writes a list of parts
        except TypeError:
            pass  # a type hiredis does not take (a bytearray; None or a bool, which redis-py refuses)
    packed: list[bytes] = conn.pack_command(*command)  # type: ignore[no-untyped-call]
    return packed


def _moved(reply: Any) -> bool:
    return isinstance(reply, AskError)  # MovedError is one too
