"""`memledger bench mcp`: the tool-call round trip over stdio against the in-process App.

A real `memledger mcp` child process (its own interpreter, as an MCP client starts it) is
driven by the SDK's stdio client; each figure is the time from `call_tool` to its parsed
result, p50 and p99, timed inside the client's event loop:

- store_memory: target p50 < 5 ms; its twin is `App.send` of the same StoreMemory on the App
  the key gets in-process (the path every store ends in);
- get_memory (memories stored beforehand and projected): target p50 < 5 ms; its twin `App.get`.

Every figure is the median over `repeat` rounds after a warm-up round.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from ledger import Settings
from memledger.app import App

from .figures import Figure, Target, latency_figures
from .http_env import ORG, child_env
from .registry import BenchContext, Measurement
from .report import BenchReport
from .runner import run_benchmark

__all__ = ["run_mcp_benchmark"]

GROUP = "mcp"
IN_STORE, MCP_STORE = "in-process append", "MCP store_memory, stdio"
IN_GET, MCP_GET = "in-process get", "MCP get_memory, stdio"
AGENT = "agent-mcp"
#: Tool calls per round of each figure (`--calls`).
CALLS = 500
#: The stated goal for both tool calls.
UNDER_5_MS = Target("< 5 ms", 5.0, "max")


def run_mcp_benchmark(settings: Settings, calls: int = CALLS, repeat: int = 5,
                      progress: bool = True) -> BenchReport:
    """The MCP figures and their in-process twins, in a namespace of the bench's own (dropped after)."""
    report = run_benchmark(settings, events=1, repeat=repeat, progress=progress,
                           only=[Measurement("mcp", lambda ctx: measure_mcp(ctx, calls))])
    # the table's title counts "events": here, the tool calls of each round
    return replace(report, args={"events": calls, "calls": calls, "repeat": repeat, "seed": 0,
                                 "partitions": report.args["partitions"]})


@dataclass
class McpEnv:
    portal: BlockingPortal
    session: ClientSession
    app: App  # the App the key gets in-process

    def timed(self, tool: str, arguments: Callable[[int], dict[str, Any]], count: int) -> list[float]:
        """Seconds each of `count` tool calls took, timed in the client's event loop."""
        return self.portal.call(self._timed, tool, arguments, count)

    async def _timed(self, tool: str, arguments: Callable[[int], dict[str, Any]], count: int) -> list[float]:
        durations = []
        for n in range(count):
            start = time.perf_counter()
            result = await self.session.call_tool(tool, arguments(n))
            durations.append(time.perf_counter() - start)
            if result.is_error:
                raise AssertionError(f"the bench's own {tool} call failed: {result.content}")
        return durations


def measure_mcp(ctx: BenchContext, calls: int) -> list[Figure]:
    with App.open(ctx.settings, system=True) as system, _mcp(ctx.settings, system) as env:
        store = _store_latency(ctx, env, calls)
        _prepare_gets(ctx, env, system, calls)
        return store + _get_latency(ctx, env, calls)


def _store_latency(ctx: BenchContext, env: McpEnv, calls: int) -> list[Figure]:
    def in_process(index: int) -> list[float]:
        return _timed(lambda n: env.app.send(_store_command(f"ip{index}-{n}")), calls)

    def over_mcp(index: int) -> list[float]:
        return env.timed("store_memory", lambda n: {"content": f"bench memory m{index}-{n}", "tags": ["t0"],
                                                    "memory_id": f"m{index}-{n}"}, calls)

    local, remote = ctx.rounds(IN_STORE, in_process), ctx.rounds(MCP_STORE, over_mcp)
    return (latency_figures(IN_STORE, GROUP, local)
            + latency_figures(MCP_STORE, GROUP, remote, {50: UNDER_5_MS}, baseline=IN_STORE))


def _prepare_gets(ctx: BenchContext, env: McpEnv, system: App, calls: int) -> None:
    advance = ctx.reporter.task(f"storing {calls:,} memories to read", 1)
    env.app.send_many([_store_command(f"g-{n}") for n in range(calls)])
    system.run_projector("memories", until_caught_up=True)
    advance("done")


def _get_latency(ctx: BenchContext, env: McpEnv, calls: int) -> list[Figure]:
    def in_process(index: int) -> list[float]:
        return _timed(lambda n: env.app.get(None, f"g-{n}"), calls)

    def over_mcp(index: int) -> list[float]:
        return env.timed("get_memory", lambda n: {"memory_id": f"g-{n}"}, calls)

    local, remote = ctx.rounds(IN_GET, in_process), ctx.rounds(MCP_GET, over_mcp)
    return (latency_figures(IN_GET, GROUP, local)
            + latency_figures(MCP_GET, GROUP, remote, {50: UNDER_5_MS}, baseline=IN_GET))


def _store_command(memory_id: str) -> dict[str, Any]:
    return {"type": "StoreMemory", "org_id": ORG, "agent_id": AGENT, "memory_id": memory_id,
            "content": f"bench memory {memory_id}", "tags": ["t0"]}


def _timed(call: Callable[[int], object], count: int) -> list[float]:
    durations = []
    for n in range(count):
        start = time.perf_counter()
        call(n)
        durations.append(time.perf_counter() - start)
    return durations


@contextmanager
def _mcp(settings: Settings, system: App) -> Iterator[McpEnv]:
    """Migrate, issue an agent key, start `memledger mcp` with it; yields the client session."""
    system.migrate()
    issued = system.issue_key(ORG, "agent", AGENT, label="bench mcp")
    env = child_env(settings)
    env["MEMLEDGER_API_KEY"] = issued.secret
    params = StdioServerParameters(command=sys.executable, args=["-m", "memledger", "mcp"], env=env)

    @asynccontextmanager
    async def session() -> AsyncIterator[ClientSession]:
        async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as client:
            await client.initialize()
            yield client

    principal = system.authenticate(issued.secret)
    with App.for_principal(settings, principal) as app, start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(session()) as client:
            yield McpEnv(portal, client, app)


