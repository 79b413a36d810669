"""The Redis read models' figures: apply throughput of each projection against raw pipelined
commands of the same kind, and the query cache's HIT latency.

Drop-in for memledger/bench/ (add "memledger.bench.redis_models" to runner.MODULES).

- Input: the data set's events, decoded once (outside the timing), cut into batches of
  1000 per partition as the projector hands them over. Each round applies them into a
  fresh key generation (label), so every round starts empty, as the first did.
- Raw baselines get the same decoded events and issue, per event, the commands a naive
  projection would (500 per pipeline, no Lua, no checkpoint, no bookkeeping):
  trending: ZINCRBY per tag used and per recall; analytics: HINCRBY of the type counter,
  PFADD of the agent and of the user; activity: LPUSH + LTRIM of the agent's feed and a
  PUBLISH on the org's channel.
- Cache HIT latency: one MemoryQuery's rows (20 rows of the data set) stored, then looked
  up through `QueryCache.query` (one script call + decoding the rows), per call.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ledger.codec import decode_body
from ledger.events import Position, RecordedEvent
from ledger import events as ev
from projections.query import MemoryQuery, QueryResult
from projections.redis import ActivityProjection, AnalyticsProjection, QueryCache, RedisProjection, TrendingProjection
from projections.redis.activity import channel, entry
from projections.redis.analytics import day_of, user_of
from projections.redis.trending import hour_of

from memledger.bench.figures import Figure, Target, latency_figures, throughput
from memledger.bench.registry import BenchContext, Stopwatch, measurement

GROUP = "redis read models"
BATCH = 1000
PIPELINE = 500
RATIO = Target(">= 0.5x raw", 0.5, "min", on="ratio")
HIT_TARGETS = {50: Target("< 1 ms", 1.0, "max")}
Batches = list[tuple[int, list[RecordedEvent]]]


def batches(ctx: BenchContext) -> Batches:
    if "redis_batches" not in ctx.shared:
        per: dict[int, list[RecordedEvent]] = defaultdict(list)
        data = ctx.data
        for i, (body, version, p) in enumerate(zip(data.bodies, data.versions, data.partitions)):
            per[p].append(RecordedEvent(Position(p, f"{1_700_000_000_000 + i}-0"), decode_body(body, version), body))
        ctx.shared["redis_batches"] = [(p, evs[i:i + BATCH]) for p, evs in sorted(per.items())
                                       for i in range(0, len(evs), BATCH)]
    return ctx.shared["redis_batches"]  # type: ignore[no-any-return]


def _apply_all(projection: RedisProjection, work: Batches) -> None:
    after: dict[int, str] = {}
    for p, events in work:
        projection.apply(p, events, after.get(p, "0-0"))
        after[p] = events[-1].position.stream_id


def _measure_projection(ctx: BenchContext, cls: type[RedisProjection], raw: str) -> Figure:
    work = batches(ctx)

    def once(round_: int) -> float:
        projection = cls(ctx.redis, ctx.settings.namespace, ctx.settings.partitions, label=f"bench{round_}")
        projection.ensure_current()
        with Stopwatch() as watch:
            _apply_all(projection, work)
        projection.drop()
        return watch.seconds
    name = f"{cls.name} projection apply"
    return throughput(name, GROUP, len(ctx.data), ctx.rounds(name, once), target=RATIO, baseline=raw,
                      note=f"batches of {BATCH} per partition, one Lua call each")


def _raw_trending(pipe: Any, ns: str, r: RecordedEvent) -> None:
    e, d = r.event, r.event.data
    tags = d.tags if isinstance(d, (ev.MemoryStored, ev.MemoryTagged)) else ()
    for tag in tags:
        pipe.zincrby(f"{{{ns}:raw{r.position.partition}}}:t:{hour_of(e.occurred_at)}:{e.org_id}", 1, tag)
    if isinstance(d, ev.MemoryRecalled):
        pipe.zincrby(f"{{{ns}:raw{r.position.partition}}}:m:{hour_of(e.occurred_at)}:{e.org_id}", 1,
                     f"{e.agent_id}/{e.subject_id}")


def _raw_analytics(pipe: Any, ns: str, r: RecordedEvent) -> None:
    e = r.event
    suffix = f"{day_of(e.occurred_at)}:{e.org_id}"
    tag = f"{{{ns}:raw{r.position.partition}}}"
    pipe.hincrby(f"{tag}:n:{suffix}", e.type, 1)
    pipe.pfadd(f"{tag}:a:{suffix}", e.agent_id)
    if (user := user_of(e.data)) is not None:
        pipe.pfadd(f"{tag}:u:{suffix}", user)


def _raw_activity(pipe: Any, ns: str, r: RecordedEvent) -> None:
    e = r.event
    feed = f"{{{ns}:raw{r.position.partition}}}:f:{e.org_id}/{e.agent_id}"
    body = entry(r)
    pipe.lpush(feed, body)
    pipe.ltrim(feed, 0, 99)
    pipe.publish(channel(ns + "raw", e.org_id), body)


RAW = {TrendingProjection: _raw_trending, AnalyticsProjection: _raw_analytics, ActivityProjection: _raw_activity}


def _measure_raw(ctx: BenchContext, cls: type[RedisProjection]) -> Figure:
    events = [r for _, evs in batches(ctx) for r in evs]
    write, ns = RAW[cls], ctx.settings.namespace

    def once(_: int) -> float:
        with Stopwatch() as watch:
            for start in range(0, len(events), PIPELINE):
                with ctx.redis.pipeline(transaction=False) as pipe:
                    for r in events[start:start + PIPELINE]:
                        write(pipe, ns, r)
                    pipe.execute()
        keys = list(ctx.redis.scan_iter(match=f"{{{ns}:raw*", count=1000))
        for i in range(0, len(keys), 500):
            ctx.redis.unlink(*keys[i:i + 500])
        return watch.seconds
    name = f"raw pipelined, as {cls.name}"
    return throughput(name, "raw limit", len(ctx.data), ctx.rounds(name, once), note=f"{PIPELINE} commands per pipeline")


for _cls in (TrendingProjection, AnalyticsProjection, ActivityProjection):
    def _both(ctx: BenchContext, cls: type[RedisProjection] = _cls) -> Sequence[Figure]:
        raw = _measure_raw(ctx, cls)
        return [raw, _measure_projection(ctx, cls, raw.name)]
    measurement(f"{_cls.name} projection")(_both)


@measurement("query cache hit")
def measure_cache_hit(ctx: BenchContext) -> Sequence[Figure]:
    cache = QueryCache(ctx.redis, ctx.settings.namespace, ctx.schema, 300)
    q = MemoryQuery("org-00", limit=20)
    rows = [{"org_id": r.org_id, "agent_id": r.agent_id, "memory_id": r.memory_id, "content": r.content,
             "memory_type": "note", "tags": list(r.tags), "importance": r.importance, "metadata": r.metadata,
             "session_id": None, "created_at": r.created_at, "updated_at": r.updated_at, "expires_at": None,
             "version": r.version, "recall_count": 0, "last_recalled_at": None} for r in ctx.data.rows[:20]]
    cache.query(q, lambda _: QueryResult(rows))  # a MISS stores them

    def once(_: int) -> list[float]:
        calls = []
        for _ in range(2000):
            start = time.perf_counter()
            result = cache.query(q, lambda _: QueryResult(rows))
            calls.append(time.perf_counter() - start)
            assert result.cache == "HIT"
        return calls
    return latency_figures("query cache HIT", GROUP, ctx.rounds("query cache HIT", once), HIT_TARGETS)
