"""The FastAPI application: routers by resource under /v1, one error table, body checks, timing.

    create_app(settings)                          API keys (Authorization: Bearer mlk_...)
    create_app(settings, insecure_no_auth=True)   X-Org / X-Agent headers, local development only

The server keeps, in `app.state`: `gate` (authentication and the per-principal App pools),
`ops` (its own unscoped App for /health's namespace-wide figures) and `cache_probe` (the asyncio
Redis client that answers cached reads on the event loop). All close at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ledger import Settings
from memledger.app import App
from projections.redis.cache_probe import CacheProbe

from . import conversations, live, metrics, operations, problems, reads, search, writes
from .auth import Gate
from .fast_routes import FastRoutes
from .middleware import BodyGuard, ServerTiming
from .operations import OpsView

__all__ = ["create_app"]

DESCRIPTION = """An event-sourced memory ledger for AI agents.

Authenticate with `Authorization: Bearer mlk_...` (`memledger keys create`). Errors are
`application/problem+json`. Writes answer `ETag` (the memory's version) and
`X-Consistency-Token`; reads accept `consistent_with=<token>` to read their writes.
"""


def create_app(settings: Settings, *, insecure_no_auth: bool = False) -> FastAPI:
    """The HTTP API on `settings`; with `insecure_no_auth`, callers name their org in `X-Org`."""
    from memledger.mcp.http import McpMount  # here: memledger.mcp imports memledger.http.problems

    ops = OpsView(App.open(settings), insecure_no_auth)
    gate = Gate(settings, App.open(settings), insecure_no_auth)
    mcp = McpMount(gate)  # the MCP streamable-HTTP transport at /mcp
    probe = CacheProbe(settings)  # cached GET /v1/memories answered on the event loop

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with mcp.running():  # the MCP sessions' task group lives as long as the app
                yield
        finally:
            await probe.aclose()
            gate.close()
            ops.close()

    api = FastAPI(title="memory-ledger", version="1", description=DESCRIPTION, lifespan=lifespan)
    api.state.settings, api.state.gate, api.state.ops, api.state.cache_probe = settings, gate, ops, probe
    problems.install(api)
    api.include_router(search.router)  # before /v1/memories/{id}: "search" is not a memory id
    for module in (writes, reads, operations, conversations):
        api.include_router(module.router)
    api.add_middleware(FastRoutes, api=api)  # innermost: after the body checks, inside timing and metrics
    api.add_middleware(BodyGuard)
    api.add_middleware(ServerTiming)
    api.include_router(live.router)  # GET /v1/events (SSE)
    metrics.install(api, settings)  # outermost middleware + GET /metrics
    mcp.mount(api)
    _document_problems(api)
    return api


def _document_problems(api: FastAPI) -> None:
    """Add the Problem schema to the spec (routes refer to it by $ref)."""
    build = api.openapi

    def openapi() -> dict[str, object]:
        if api.openapi_schema is None:
            spec = build()
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(components["Problem"].pop("$defs", {}))
            api.openapi_schema = spec
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
