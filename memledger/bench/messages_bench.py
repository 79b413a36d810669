"""`memledger bench messages`: working memory's figures (issue 17).

- append-message p50 (target < 1 ms): `App.send(AppendMessage)` in process, one session per round;
- recent 10 messages from the cache p50 (< 1 ms): `App.recent_messages(..., 10)` on sessions the
  recent-messages projection holds, every answer checked to say `cache`;
- recent 10 from PostgreSQL p50 (< 10 ms): the same call after the session's list was evicted
  (deleted outside the timed call), so each call is a cold read: PostgreSQL, then the refill
  of the cache, every answer checked to say `database`;
- the recent-messages projector's apply throughput, as a ratio (>= 0.5x) to raw pipelined
  commands of the same kind: per message RPUSH + LTRIM + PEXPIRE of its session's list and
  HSET of the session's head, 500 commands' worth per pipeline, no Lua, no checkpoint.

The sessions are loaded once (`sessions` x `per_session` messages) and both projections run
until caught up, in process. Every figure is the median over `repeat` rounds after a warm-up.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ledger import Settings, open_log
from ledger.errors import CommandError
from ledger.events import MessageAppended, RecordedEvent
from memledger.app import App
from projections.redis.recent_messages import RecentMessagesProjection, conversation_key, entry

from .figures import Figure, Target, latency_figures, throughput
from .registry import BenchContext, Measurement, Stopwatch
from .report import BenchReport
from .runner import run_benchmark

__all__ = ["run_messages_benchmark"]

GROUP = "working memory"
ORG = "org-bench"
BATCH, PIPELINE = 1000, 500
APPEND_CALLS, READ_CALLS = 500, 500
RAW_NAME = "raw pipelined, as recent_messages"


def run_messages_benchmark(settings: Settings, sessions: int = 200, per_session: int = 50, repeat: int = 5,
                           progress: bool = True) -> BenchReport:
    """Working memory's figures in a namespace of the bench's own (dropped after)."""
    def measure(ctx: BenchContext) -> Sequence[Figure]:
        return measure_messages(ctx, sessions, per_session)

    report = run_benchmark(settings, events=1, repeat=repeat, progress=progress,
                           only=[Measurement("messages", measure)])
    return replace(report, args={**report.args, "events": sessions * per_session, "sessions": sessions,
                                 "per_session": per_session})


def measure_messages(ctx: BenchContext, sessions: int, per_session: int) -> list[Figure]:
    from projections.postgres import migrate

    migrate.upgrade(ctx.settings)
    with App.open(ctx.settings) as app:
        figures = append_latency(ctx, app)
        names = load(ctx, app, sessions, per_session)
        figures += cache_latency(ctx, app, names) + database_latency(ctx, app, names)
    return figures + projector_throughput(ctx)


def _message(session: str, n: int, agent: str = "agent-0") -> dict[str, Any]:
    return {"type": "AppendMessage", "org_id": ORG, "agent_id": agent, "session_id": session,
            "role": ("user", "assistant")[n % 2], "content": f"message {n} of {session}: about the bench"}


def append_latency(ctx: BenchContext, app: App) -> list[Figure]:
    def once(index: int) -> list[float]:
        return _timed(lambda n: app.send(_message(f"append-{index}", n)), APPEND_CALLS)
    name = "append message, in process"
    return latency_figures(name, GROUP, ctx.rounds(name, once), {50: Target("< 1 ms", 1.0, "max")})


def load(ctx: BenchContext, app: App, sessions: int, per_session: int) -> list[tuple[str, str]]:
    """(agent, session) of `sessions` conversations of `per_session` messages, projected."""
    advance = ctx.reporter.task(f"loading {sessions * per_session:,} messages", 1)
    names = [(f"agent-{s % 16}", f"chat-{s}") for s in range(sessions)]
    for n in range(per_session):
        outcomes = app.send_many([_message(session, n, agent) for agent, session in names])
        refused = [o for o in outcomes if isinstance(o, CommandError)]
        if refused:
            raise AssertionError(f"the bench's own messages were refused: {refused[0]}")
    for projection in ("conversations", "recent_messages"):
        app.run_projector(projection, until_caught_up=True)
    advance("done")
    return names


def cache_latency(ctx: BenchContext, app: App, names: list[tuple[str, str]]) -> list[Figure]:
    def once(_: int) -> list[float]:
        def read(n: int) -> None:
            agent, session = names[n % len(names)]
            if app.recent_messages(ORG, session, 10, agent).source != "cache":
                raise AssertionError(f"{session} was not answered from the cache")
        return _timed(read, READ_CALLS)
    name = "recent 10 messages, cache"
    return latency_figures(name, GROUP, ctx.rounds(name, once), {50: Target("< 1 ms", 1.0, "max")})


def database_latency(ctx: BenchContext, app: App, names: list[tuple[str, str]]) -> list[Figure]:
    keys = RecentMessagesProjection(ctx.redis, ctx.settings.namespace, ctx.settings.partitions).keys
    partition = open_log(ctx.settings)

    def evict(agent: str, session: str) -> None:
        p = partition.partition_of(ORG, agent)
        ctx.redis.delete(f"{keys.prefix(p, 'v1')}:m:{conversation_key(ORG, agent, session)}")

    def once(_: int) -> list[float]:
        calls = []
        for n in range(READ_CALLS):
            agent, session = names[n % len(names)]
            evict(agent, session)  # outside the timed call: each read is a cold one
            start = time.perf_counter()
            found = app.recent_messages(ORG, session, 10, agent)
            calls.append(time.perf_counter() - start)
            if found.source != "database":
                raise AssertionError(f"{session} was answered from the {found.source}, not PostgreSQL")
        return calls
    name = "recent 10 messages, PostgreSQL (cold)"
    try:
        return latency_figures(name, GROUP, ctx.rounds(name, once), {50: Target("< 10 ms", 10.0, "max")})
    finally:
        partition.close()


def _timed(call: Any, count: int) -> list[float]:
    durations = []
    for n in range(count):
        start = time.perf_counter()
        call(n)
        durations.append(time.perf_counter() - start)
    return durations


# -- the projector against raw commands ------------------------------------------------------------


def _batches(ctx: BenchContext) -> list[tuple[int, list[RecordedEvent]]]:
    log = open_log(ctx.settings)
    try:
        out = []
        for p in range(log.partitions):
            events = [r for r in log.iter_partition(p) if r.event.type == "MessageAppended"]
            out += [(p, events[i:i + BATCH]) for i in range(0, len(events), BATCH)]
        return out
    finally:
        log.close()


def _entry(r: RecordedEvent) -> bytes:
    d = r.event.data
    assert isinstance(d, MessageAppended)
    return entry(r.event.subject_version, d.role, d.content, d.metadata, r.event.occurred_at.isoformat(),
                 r.position.stream_id)


def projector_throughput(ctx: BenchContext) -> list[Figure]:
    work = _batches(ctx)
    count = sum(len(events) for _, events in work)
    settings = ctx.settings

    def apply(index: int) -> float:
        projection = RecentMessagesProjection(ctx.redis, settings.namespace, settings.partitions,
                                              label=f"bench{index}", cap=settings.session_cache_messages,
                                              ttl_s=settings.session_cache_ttl)
        projection.ensure_current()
        after: dict[int, str] = defaultdict(lambda: "0-0")
        with Stopwatch() as watch:
            for p, events in work:
                projection.apply(p, events, after[p])
                after[p] = events[-1].position.stream_id
        projection.drop()
        return watch.seconds

    raw = [r for _, events in work for r in events]
    entries = [(r, _entry(r)) for r in raw]

    def pipelined(_: int) -> float:
        ns, cap, ttl = settings.namespace, settings.session_cache_messages, settings.session_cache_ttl * 1000
        with Stopwatch() as watch:
            for start in range(0, len(entries), PIPELINE // 4):
                with ctx.redis.pipeline(transaction=False) as pipe:
                    for r, body in entries[start:start + PIPELINE // 4]:
                        e, tag = r.event, f"{{{ns}:raw{r.position.partition}}}"
                        conv = conversation_key(e.org_id, e.agent_id, e.subject_id)
                        pipe.rpush(f"{tag}:m:{conv}", body)
                        pipe.ltrim(f"{tag}:m:{conv}", -cap, -1)
                        pipe.pexpire(f"{tag}:m:{conv}", ttl)
                        pipe.hset(f"{tag}:n", conv, e.subject_version)
                    pipe.execute()
        keys = list(ctx.redis.scan_iter(match=f"{{{ns}:raw*", count=1000))
        for i in range(0, len(keys), 500):
            ctx.redis.unlink(*keys[i:i + 500])
        return watch.seconds

    base = throughput(RAW_NAME, "raw limit", count, ctx.rounds(RAW_NAME, pipelined), "messages/s",
                      note=f"RPUSH, LTRIM, PEXPIRE, HSET per message, {PIPELINE} commands per pipeline")
    name = "recent_messages projection apply"
    mine = throughput(name, GROUP, count, ctx.rounds(name, apply), "messages/s", baseline=RAW_NAME,
                      target=Target(">= 0.5x raw", 0.5, "min", on="ratio"),
                      note=f"batches of {BATCH} per partition, one Lua call each")
    return [base, mine]
