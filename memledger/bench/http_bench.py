"""`memledger bench http`: the HTTP API against the in-process path, measured in the same run.

Each HTTP figure has an in-process twin as its baseline, and its target is a ratio to it:

- store, one client: p50 and p99 of POST /v1/memories <= 4x `App.send` of the same
  StoreMemory on the App that key gets in-process;
- batch: POST /v1/commands from 16 concurrent clients, commands/s >= 0.5x the in-process
  command bus (`App.send_many`, one caller) at the same batch size;
- GET /v1/memories at `memories` stored memories: cached p50 <= 3x the in-process cached
  query, uncached (each call's filter differs, so each one is a MISS) <= 1.5x in-process;
- SSE: append -> the event reaches a GET /v1/events client, p99 below the append ->
  queryable (the memories projection applied it) p99 of the same appends.

The HTTP figures use a plain keep-alive HTTP/1.1 client (memledger/bench/raw_http.py), so they
show what the API costs; the "Python client" figures repeat the store and the cached query
through `memledger.client` (httpx), which adds its own per-request cost.

The server and the projector run in child processes (memledger/bench/http_env.py). Every
figure is the median over `repeat` rounds after a warm-up round.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import orjson

from ledger import Settings
from ledger.errors import CommandError, Timeout
from memledger.app import App
from memledger.client import Client

from .figures import Figure, Target, latency_figures, throughput
from .http_env import ORG, HttpEnv, projector, served
from .raw_http import RawHttp
from .registry import BenchContext, Measurement, Stopwatch
from .report import BenchReport
from .runner import run_benchmark

__all__ = ["run_http_benchmark"]

GROUP = "http"
IN_STORE, HTTP_STORE, PY_STORE = "in-process append", "HTTP store, 1 client", "Python client store"
IN_BATCH, HTTP_BATCH = "in-process bus, batches", "HTTP POST /v1/commands, 16 clients"
IN_HIT, HTTP_HIT, PY_HIT = "in-process query, cached", "HTTP GET /v1/memories, cached", "Python client query, cached"
IN_MISS, HTTP_MISS = "in-process query, uncached", "HTTP GET /v1/memories, uncached"
QUERYABLE, SSE = "append to queryable", "append to SSE client"
#: Calls per round of the latency figures.
STORE_CALLS, QUERY_CALLS, SSE_CALLS = 500, 300, 150
#: The batch figure: clients, commands per request, requests per client and round.
CLIENTS, BATCH, REQUESTS = 16, 100, 16  # 25,600 commands a round: a second or two each side
#: Distinct tags over the loaded memories (a tag matches about 1 in TAGS).
TAGS = 20


def ratio_at_most(text: str, threshold: float) -> Target:
    return Target(text, threshold, "max", on="ratio")


def run_http_benchmark(settings: Settings, memories: int = 100_000, repeat: int = 5,
                       progress: bool = True) -> BenchReport:
    """Every HTTP figure and its in-process twin, in a namespace of the bench's own (dropped after)."""
    report = run_benchmark(settings, events=1, repeat=repeat, progress=progress, query_rows=memories,
                           only=[Measurement("http", measure_http)])
    # The table's title counts "events": here, the memories queries run on.
    return replace(report, args={"events": memories, "memories": memories, "repeat": repeat, "seed": 0,
                                 "partitions": report.args["partitions"]})


def measure_http(ctx: BenchContext) -> Sequence[Figure]:
    with served(ctx.settings) as env:
        figures = store_latency(ctx, env) + batch_throughput(ctx, env)
        load_memories(ctx, env, int(ctx.shared.get("query_rows") or 100_000))
        figures += query_latency(ctx, env)
        with projector(ctx.settings, "memories"):
            figures += sse_delivery(ctx, env)
    return figures


def _store(memory_id: str, agent: str = "agent-0", tag: str = "t0") -> dict[str, Any]:
    return {"type": "StoreMemory", "org_id": ORG, "agent_id": agent, "memory_id": memory_id,
            "content": f"bench memory {memory_id} about {tag}", "tags": [tag], "importance": 0.5}


def _accepted(outcomes: Sequence[object]) -> None:
    refused = [o for o in outcomes if isinstance(o, CommandError)]
    if refused:
        raise AssertionError(f"the bench's own commands were refused: {refused[0]}")


# -- store latency ---------------------------------------------------------------------------------


def store_latency(ctx: BenchContext, env: HttpEnv) -> list[Figure]:
    def in_process(index: int) -> list[float]:
        return _timed(lambda n: env.app.send(_store(f"ip{index}-{n}")), STORE_CALLS)

    raw = RawHttp(env.url, env.key)

    def over_http(index: int) -> list[float]:
        return _timed(lambda n: raw.post("/v1/memories", {"content": f"store {n}", "agent_id": "agent-0",
                                                          "memory_id": f"h{index}-{n}", "tags": ["t0"]}), STORE_CALLS)

    with Client(env.url, env.key) as client:
        def python_client(index: int) -> list[float]:
            return _timed(lambda n: client.store(f"store {n}", agent_id="agent-0", memory_id=f"p{index}-{n}",
                                                 tags=["t0"]), STORE_CALLS)

        try:
            local = ctx.rounds(IN_STORE, in_process)
            remote = ctx.rounds(HTTP_STORE, over_http)
            python = ctx.rounds(PY_STORE, python_client)
        finally:
            raw.close()
    targets = {50: ratio_at_most("<= 4x in-process", 4.0), 99: ratio_at_most("<= 4x in-process", 4.0)}
    return (latency_figures(IN_STORE, GROUP, local)
            + latency_figures(HTTP_STORE, GROUP, remote, targets, baseline=IN_STORE)
            + latency_figures(PY_STORE, GROUP, python, baseline=IN_STORE))


def _timed(call: Callable[[int], object], count: int) -> list[float]:
    """Seconds each of `count` calls `call(n)` took."""
    durations = []
    for n in range(count):
        start = time.perf_counter()
        call(n)
        durations.append(time.perf_counter() - start)
    return durations


# -- batch throughput ------------------------------------------------------------------------------


def _batches(prefix: str) -> list[list[dict[str, Any]]]:
    return [[_store(f"{prefix}-{r}-{n}", f"agent-{(r * BATCH + n) % 32}", f"t{n % TAGS}") for n in range(BATCH)]
            for r in range(CLIENTS * REQUESTS)]


def batch_throughput(ctx: BenchContext, env: HttpEnv) -> list[Figure]:
    count = CLIENTS * REQUESTS * BATCH

    def in_process(index: int) -> float:
        batches = _batches(f"ib{index}")
        with Stopwatch() as watch:
            for batch in batches:
                _accepted(env.app.send_many(batch))
        return watch.seconds

    clients = [httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {env.key}"}, timeout=60)
               for _ in range(CLIENTS)]

    def post(client: httpx.Client, batches: list[list[dict[str, Any]]]) -> None:
        for batch in batches:
            # Encoded and decoded with orjson, as memledger.client does: the clients share this
            # 2-core machine with the server they measure
            response = client.post("/v1/commands", content=orjson.dumps(batch),
                                   headers={"Content-Type": "application/json"})
            results = orjson.loads(response.content)
            if not all(r["ok"] for r in results):
                raise AssertionError(f"the bench's own commands were refused: {results[0]}")

    def over_http(index: int) -> float:
        batches = _batches(f"hb{index}")
        shares = [batches[c::CLIENTS] for c in range(CLIENTS)]
        with ThreadPoolExecutor(CLIENTS) as pool, Stopwatch() as watch:
            list(pool.map(post, clients, shares))
        return watch.seconds

    try:
        # Each round runs both sides, one after the other: this machine's speed drifts by a fifth
        # within minutes, and both medians then come from the same minutes.
        pairs = ctx.rounds(f"{IN_BATCH} and {HTTP_BATCH}", lambda index: (in_process(index), over_http(index)))
        local, remote = [p[0] for p in pairs], [p[1] for p in pairs]
    finally:
        for client in clients:
            client.close()
    note = f"{BATCH} StoreMemory per request"
    return [throughput(IN_BATCH, GROUP, count, local, "commands/s", note=note + ", one caller"),
            throughput(HTTP_BATCH, GROUP, count, remote, "commands/s", baseline=IN_BATCH, note=note,
                       target=Target(">= 0.5x in-process", 0.5, "min", on="ratio"))]


# -- queries ---------------------------------------------------------------------------------------


def load_memories(ctx: BenchContext, env: HttpEnv, count: int) -> None:
    """`count` memories of ORG, applied by the memories projection (a child process, until caught up)."""
    advance = ctx.reporter.task(f"loading {count:,} memories", 1)
    for start in range(0, count, 500):
        _accepted(env.app.send_many([_store(f"q-{n}", f"agent-{n % 32}", f"t{n % TAGS}")
                                     for n in range(start, min(count, start + 500))]))
    with App.open(ctx.settings) as system:
        system.run_projector("memories", until_caught_up=True)
    advance("done")


def query_latency(ctx: BenchContext, env: HttpEnv) -> list[Figure]:
    from projections import MemoryQuery

    def local(cached: bool) -> Callable[[int], list[float]]:
        def once(index: int) -> list[float]:
            # limit 21: the route asks one row more than a page, to know whether another follows
            return _timed(lambda n: env.app.query(MemoryQuery(ORG, tags=("t1",), limit=21,
                                                              min_importance=_floor(cached, "i", index, n))),
                          QUERY_CALLS)
        return once

    raw = RawHttp(env.url, env.key)

    def remote(cached: bool) -> Callable[[int], list[float]]:
        def once(index: int) -> list[float]:
            return _timed(lambda n: raw.get("/v1/memories", {"tag": "t1", "limit": 20,
                                                             "min_importance": _floor(cached, "h", index, n)}),
                          QUERY_CALLS)
        return once

    with Client(env.url, env.key, read_your_writes=False) as client:
        def python_client(index: int) -> list[float]:
            return _timed(lambda n: client.query(tags=["t1"], limit=20, min_importance=0.1), QUERY_CALLS)

        try:
            rounds = {name: ctx.rounds(name, fn) for name, fn in (
                (IN_HIT, local(True)), (HTTP_HIT, remote(True)), (PY_HIT, python_client), (IN_MISS, local(False)),
                (HTTP_MISS, remote(False)))}
        finally:
            raw.close()
    return (latency_figures(IN_HIT, GROUP, rounds[IN_HIT])
            + latency_figures(HTTP_HIT, GROUP, rounds[HTTP_HIT], {50: ratio_at_most("<= 3x in-process", 3.0)},
                              baseline=IN_HIT)
            + latency_figures(PY_HIT, GROUP, rounds[PY_HIT], baseline=IN_HIT)
            + latency_figures(IN_MISS, GROUP, rounds[IN_MISS])
            + latency_figures(HTTP_MISS, GROUP, rounds[HTTP_MISS], {50: ratio_at_most("<= 1.5x in-process", 1.5)},
                              baseline=IN_MISS))


def _floor(cached: bool, side: str, index: int, n: int) -> float:
    """A query's min_importance: one value for cached calls (HITs after the first), a new one for
    each uncached call (a new cache key: a MISS), different for each side and round."""
    if cached:
        return 0.1
    offset = {"i": 0, "h": 1}[side] * 500_000 + index * 5_000 + n
    return round(offset * 1e-7, 7)


# -- SSE delivery ----------------------------------------------------------------------------------


def sse_delivery(ctx: BenchContext, env: HttpEnv) -> list[Figure]:
    arrived: dict[str, float] = {}
    with Client(env.url, env.key) as client:
        stream = client.events(agent_id="agent-sse")
        reader = threading.Thread(target=_read_events, args=(stream, arrived), daemon=True)
        reader.start()
        time.sleep(1.0)  # connected: it starts at the heads

        def once(index: int) -> tuple[list[float], list[float]]:
            return _delivery_round(env, arrived, index)

        try:
            rounds = ctx.rounds(f"{SSE} and {QUERYABLE}", once)
        finally:
            client.close()  # ends the stream's connection; the reader stops at its next read
            reader.join(5)
    queryable = [r[0] for r in rounds]
    delivered = [r[1] for r in rounds]
    return (latency_figures(QUERYABLE, GROUP, queryable)
            + latency_figures(SSE, GROUP, delivered, {99: ratio_at_most("below append to queryable", 1.0)},
                              baseline=QUERYABLE))


def _read_events(stream: Any, arrived: dict[str, float]) -> None:
    try:
        for event in stream:
            arrived[event.event["subject_id"]] = time.perf_counter()
    except Exception:  # noqa: BLE001 - the bench closed the client: the stream ends here
        return


def _delivery_round(env: HttpEnv, arrived: dict[str, float], index: int) -> tuple[list[float], list[float]]:
    queryable, delivered = [], []
    for n in range(SSE_CALLS):
        memory_id = f"sse{index}-{n}"
        start = time.perf_counter()
        receipt = env.app.send(_store(memory_id, "agent-sse"))
        queryable.append(_until_queryable(env, receipt) - start)
        deadline = time.perf_counter() + 10
        while memory_id not in arrived and time.perf_counter() < deadline:
            time.sleep(0.0002)
        delivered.append(arrived.get(memory_id, float("inf")) - start)
        time.sleep(random.uniform(0.002, 0.02))  # appends fall at any phase of the server's head polling
    return queryable, delivered


def _until_queryable(env: HttpEnv, receipt: Any) -> float:
    """When the memories projection has applied `receipt` (checked every 0.2 ms)."""
    while True:
        try:
            env.app.wait_for(receipt, 0.0)
            return time.perf_counter()
        except Timeout:
            time.sleep(0.0002)
