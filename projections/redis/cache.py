"""The query cache in front of `MemoryStore.query`: HIT/MISS, invalidated by generations.

The guarantee: once the PostgreSQL memories read model has applied event E (its commit
is visible, e.g. `wait_for` returned), no cached result computed before E is served.

How (keys and arguments in projections/lua/cache_lookup.lua and cache_invalidate.lua):

- A query depends on *scopes* of its org: `a:<agent>` if it names an agent, else
  `t:<tag>` for each tag it names, else `org`. Each scope has a generation `g:` and an
  in-flight count `i:`, in one hash per org, `{ns:qc:<org>}:gen`.
- The memories projection runs `CacheInvalidation` as a commit hook. Inside its batch
  transaction, after writing the rows and before COMMIT, it marks every scope the batch
  changes in flight (`begin`): the org, the agent, and every tag the memory had before
  or has after. After the commit it takes them out of flight and bumps their
  generations (`end`).
- A reader runs one script (`get`): if any of its scopes is in flight it answers
  'busy' and the query goes to PostgreSQL uncached. Otherwise it looks up the entry
  stored under the current generations. On a miss the reader runs the SQL and stores
  the rows under the generations it read *before* the SQL (`put` refuses if they moved).
- Why that is enough: say E commits at time c. E's `begin` came before c, so a reader
  looking up after c finds E's scopes busy until E's `end`, and after it generations
  higher than any seen before that `end`. An entry is stored only under generations its
  reader saw idle *before* running its SQL, so an entry under those higher generations
  was computed by SQL that started after E's `end`, and saw E. (`put` also refuses when
  the generations moved meanwhile; that saves space, the guarantee does not need it.)
- A projector killed between `begin` and `end` leaves its scopes busy (correct, just
  uncached). Each batch first records its token and orgs in a per-partition intent hash;
  the next batch of that partition (it holds the partition's checkpoint row lock, so the
  dead batch is over) ends every token it finds there. `end` is idempotent per token.
- Expiry needs no event to be honoured: rows absent from an entry cannot appear by the
  passing of time, they only shift in when a row of the entry expires. So an entry lives
  no longer than its first row to expire (its TTL is capped at that `expires_at`, in whole
  seconds rounded down; under a second to go, it is not stored), and a hit holding a row
  already past its expiry by the store's clock (Redis' relative TTL started a little after
  that clock was read, or the clock is not the wall clock) is recomputed, never served.
- Reads from a replica (`Settings.database_read_url`) look entries up but never store one:
  the argument above needs the SQL that starts after E's `end` to see E, and a replica may
  not have replayed E yet, so its result could be filed under generations it does not
  reflect. Entries stored by readers of the primary are still served (a replica reader
  that waited for a consistency token sees at least what they saw).
- Entries expire after the TTL (Settings.cache_ttl_seconds). `invalidate_all` bumps
  every org's epoch (after a rebuild swaps the memories tables). When Redis is
  unreachable queries still answer, from PostgreSQL, with cache status BYPASS.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from ledger.connections import RedisClient, connect_redis, read_database_url
from ledger.errors import StoreUnavailable
from ledger.scripts import LuaScript
from ledger.settings import Settings

from ..fold import MemoryChange
from ..postgres.memory_store import MemoryStore
from ..query import Clock, MemoryQuery, QueryResult, Row, utc_now
from .calls import call, pipelined
from .keys import text

if TYPE_CHECKING:
    from ..postgres.base import Batch, PostgresProjection

DATETIME_COLUMNS = ("created_at", "updated_at", "expires_at", "last_recalled_at")
MAX_ENTRY_BYTES = 1 << 20  # larger results are served, not cached


def gen_key(namespace: str, org_id: str) -> str:
    return f"{{{namespace}:qc:{org_id}}}:gen"


def entry_prefix(namespace: str, org_id: str, query_hash: str) -> str:
    return f"{{{namespace}:qc:{org_id}}}:e:{query_hash}"


def intent_key(namespace: str, schema: str, partition: int) -> str:
    return f"{{{namespace}:qc}}:intent:{schema}:{partition}"


def scopes(q: MemoryQuery) -> list[str]:
    """The narrowest scopes that every change able to alter the query's result touches."""
    if q.agent_id is not None:
        return [f"a:{q.agent_id}"]
    if q.tags:
        return sorted({f"t:{t}" for t in q.tags})
    return ["org"]


def query_hash(q: MemoryQuery, schema: str) -> str:
    body = orjson.dumps({"schema": schema, **asdict(q)}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha1(body).hexdigest()[:24]


def encode_rows(rows: list[Row]) -> bytes:
    return orjson.dumps(rows)


def decode_rows(raw: bytes) -> list[Row]:
    rows: list[Row] = orjson.loads(raw)
    for row in rows:
        for column in DATETIME_COLUMNS:
            if row.get(column) is not None:
                row[column] = datetime.fromisoformat(row[column])
    return rows


def earliest_expiry(rows: list[Row]) -> datetime | None:
    return min((r["expires_at"] for r in rows if r.get("expires_at") is not None), default=None)


@dataclass(frozen=True)
class Lookup:
    status: str  # hit | miss | busy
    rows: list[Row] | None = None
    generations: str | None = None


class QueryCache:
    """Cached `MemoryQuery` results of one namespace (reader side)."""

    def __init__(self, client: RedisClient, namespace: str, schema: str, ttl_s: int, clock: Clock = utc_now,
                 fill: bool = True):
        self.client, self.namespace, self.schema, self.ttl_s = client, namespace, schema, ttl_s
        self.fill = fill  # False: results computed here are not stored (a replica's; module docstring)
        self.clock = clock  # the time expiry is judged by, as the store computing the rows judges it
        self._script = LuaScript(client, "cache_lookup.lua", package="projections")

    def _keys(self, q: MemoryQuery) -> list[str]:
        return [gen_key(self.namespace, q.org_id), entry_prefix(self.namespace, q.org_id, query_hash(q, self.schema))]

    def lookup(self, q: MemoryQuery) -> Lookup:
        reply = self._script.run(self._keys(q), ["get", *scopes(q)])
        status = text(reply[0])
        if status == "hit":
            return Lookup("hit", rows=decode_rows(reply[1]))
        return Lookup(status, generations=text(reply[1]) if status == "miss" else None)

    @property
    def script_sha(self) -> str:
        return self._script.sha

    def probe_call(self, q: MemoryQuery) -> tuple[list[str], list[str]]:
        """The keys and arguments of cache_lookup.lua's `probe` for `q`: a `get` that counts only hits,
        for a caller with its own (asynchronous) client, who reads the reply with `fresh_rows`."""
        return self._keys(q), ["probe", *scopes(q)]

    def fresh_rows(self, reply: list[Any]) -> list[Row] | None:
        """The rows of a probe's reply when it is a hit that `query` would serve, else None."""
        if text(reply[0]) != "hit":
            return None
        rows = decode_rows(reply[1])
        soonest = earliest_expiry(rows)
        return rows if soonest is None or soonest > self.clock() else None

    def entry_ttl(self, rows: list[Row]) -> int:
        """Whole seconds an entry of `rows` may live: the TTL, capped at its first row's expiry."""
        soonest = earliest_expiry(rows)
        if soonest is None:
            return self.ttl_s
        return min(self.ttl_s, math.floor((soonest - self.clock()).total_seconds()))

    def store(self, q: MemoryQuery, generations: str, rows: list[Row]) -> bool:
        ttl, value = self.entry_ttl(rows), encode_rows(rows)
        if ttl < 1 or len(value) > MAX_ENTRY_BYTES:
            return False
        return bool(self._script.run(self._keys(q), ["put", ttl, value, generations, *scopes(q)]))

    def query(self, q: MemoryQuery, compute: Callable[[MemoryQuery], QueryResult]) -> QueryResult:
        """`compute(q)` through the cache; the result says HIT, MISS or (Redis down) BYPASS."""
        try:
            found = self.lookup(q)
        except StoreUnavailable as e:
            return QueryResult(compute(q).rows, "BYPASS", {"cache_error": str(e)})
        if found.rows is not None:
            soonest = earliest_expiry(found.rows)
            if soonest is None or soonest > self.clock():
                return QueryResult(found.rows, "HIT")
            # Not stored again: the entry's TTL (capped at that expiry) ends it within moments.
            return QueryResult(compute(q).rows, "MISS", {"cache_reason": "a cached memory expired"})
        rows = compute(q).rows
        if not self.fill:
            return QueryResult(rows, "MISS", {"cache_reason": "read from a replica: not cached"})
        if found.generations is not None:
            try:
                self.store(q, found.generations, rows)
            except StoreUnavailable:
                pass  # the answer is right; it is just not cached
        reason = "write in flight" if found.status == "busy" else "not cached"
        return QueryResult(rows, "MISS", {"cache_reason": reason})


class CachedMemoryStore(MemoryStore):
    """A MemoryStore whose `query` goes through the Redis query cache."""

    def __init__(self, conninfo: str, schema: str, client: RedisClient, namespace: str, ttl_s: int,
                 clock: Clock = utc_now, fill: bool = True):
        super().__init__(conninfo, schema, clock)
        self.cache = QueryCache(client, namespace, schema, ttl_s, clock, fill)

    def query(self, q: MemoryQuery) -> QueryResult:
        return self.cache.query(q, super().query)

    def close(self) -> None:
        super().close()
        self.cache.client.close()


def open_cached_store(settings: Settings, clock: Clock = utc_now) -> CachedMemoryStore:
    """The namespace's memories behind the query cache (connecting raises StoreUnavailable), read
    from the replica when `database_read_url` is set."""
    return CachedMemoryStore(read_database_url(settings), settings.db_schema, connect_redis(settings),
                             settings.namespace, settings.cache_ttl_seconds, clock,
                             fill=settings.database_read_url is None)


# -- the writer side -----------------------------------------------------------------------


def _by_org(changed: Iterable[MemoryChange]) -> dict[str, list[str]]:
    """The scopes each org's changes touch: the org, each agent, every tag before or after."""
    found: dict[str, set[str]] = defaultdict(set)
    for change in changed:
        found[change.org_id].update(("org", f"a:{change.agent_id}", *(f"t:{t}" for t in change.tags)))
    return {org: sorted(s) for org, s in sorted(found.items())}


class CacheInvalidation:
    """Commit hook of the memories projection (see the module docstring).

    What a batch changed comes with the batch (`Batch.changed`: org, agent, and tags before
    and after of each memory row it changed, as MemoriesProjection.write reports them).
    """

    def __init__(self, client: RedisClient, namespace: str, schema: str):
        self.client, self.namespace, self.schema = client, namespace, schema
        self._script = LuaScript(client, "cache_invalidate.lua", package="projections")
        self._pending: dict[int, tuple[str, list[str]]] = {}  # partition -> token, orgs

    def before_commit(self, projection: object, partition: int, batch: Batch) -> None:
        orgs = _by_org(batch.changed)
        intent, token = intent_key(self.namespace, self.schema, partition), uuid.uuid4().hex

        def record(pipe: Any) -> None:
            pipe.hgetall(intent)
            if orgs:
                pipe.hset(intent, token, ",".join(orgs))
        earlier = pipelined(self.client, record, "recording a cache intent")[0]
        if earlier:
            # We hold this partition's checkpoint row lock, so those batches are over.
            self._end(intent, {text(t): text(o).split(",") for t, o in earlier.items()})
        if orgs:
            self._pending[partition] = (token, list(orgs))
            self._script.run_many([([gen_key(self.namespace, org)], ["begin", token, *s]) for org, s in orgs.items()])

    def after_commit(self, projection: object, partition: int, batch: Batch) -> None:
        pending = self._pending.pop(partition, None)
        if pending is not None:
            token, orgs = pending
            self._end(intent_key(self.namespace, self.schema, partition), {token: orgs})

    def _end(self, intent: str, tokens: dict[str, list[str]]) -> None:
        self._script.run_many([([gen_key(self.namespace, org)], ["end", token])
                               for token, orgs in tokens.items() for org in orgs])
        call(lambda: self.client.hdel(intent, *tokens), "clearing a cache intent")


def attach_query_cache(projection: PostgresProjection, settings: Settings, schema: str) -> PostgresProjection:
    """Make the live memories projection invalidate the query cache around its commits."""
    projection.commit_hooks.append(CacheInvalidation(connect_redis(settings), settings.namespace, schema))
    return projection


# -- operators -----------------------------------------------------------------------------


def _gen_keys(client: RedisClient, namespace: str) -> list[bytes]:
    return call(lambda: list(client.scan_iter(match=f"{{{namespace}:qc:*}}:gen", count=1000)), "listing caches")


def cache_stats(client: RedisClient, namespace: str) -> dict[str, int]:
    """Lookups answered from the cache (hits) and not (misses), over every org."""
    names = _gen_keys(client, namespace)
    replies = pipelined(client, lambda pipe: [pipe.hmget(n, "hits", "misses") for n in names], "reading cache stats")
    hits = sum(int(h or 0) for h, _ in replies)
    misses = sum(int(m or 0) for _, m in replies)
    return {"hits": hits, "misses": misses, "orgs": len(names)}


def invalidate_all(client: RedisClient, namespace: str) -> int:
    """Drop every cached result of the namespace (bumps each org's epoch); returns the orgs."""
    names = _gen_keys(client, namespace)
    pipelined(client, lambda pipe: [pipe.hincrby(n, "epoch", 1) for n in names], "invalidating the cache")
    return len(names)
