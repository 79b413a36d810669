"""The resources: a memory (`memory://{agent}/{memory_id}`) and an agent's recent activity
(`activity://{agent}`), read on the caller's App as the tools are, so scoped alike.

A failure is an MCP error (resources have no `isError`): code -32002 (resource not found) for
a 404, -32603 otherwise, with the problem (`{"code", "detail", ...}`) as its data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError

from ledger.errors import LedgerError
from memledger.http.problems import HttpProblem

from . import calls
from .problems import problem_of, render

if TYPE_CHECKING:
    from .scope import Caller, Scope

__all__ = ["RESOURCES"]

#: JSON-RPC error codes of a failed read: the spec's "resource not found", and "internal error".
NOT_FOUND, INTERNAL = -32002, -32603
#: Entries of the activity resource.
FEED_LIMIT = 50


async def _read(ctx: Context[Any, Any], call: Callable[[Caller], dict[str, Any]]) -> str:
    scope: Scope = getattr(ctx.mcp_server, "scope")
    try:
        return render(await scope.run(ctx, call))
    except (LedgerError, HttpProblem) as error:
        problem = problem_of(error)
        code = NOT_FOUND if problem["status"] == 404 else INTERNAL
        raise MCPError(code, problem["detail"], problem) from None


async def memory(agent: str, memory_id: str, ctx: Context[Any, Any]) -> str:
    """One memory of one agent, as get_memory returns it (JSON)."""
    return await _read(ctx, lambda c: calls.get(c, memory_id, agent, None, None))


async def activity(agent: str, ctx: Context[Any, Any]) -> str:
    """An agent's recent activity, newest first: what it stored, changed, recalled, forgot (JSON)."""
    return await _read(ctx, lambda c: calls.feed(c, agent, FEED_LIMIT))


#: (URI template, function, name) of every resource.
RESOURCES: tuple[tuple[str, Callable[..., Any], str], ...] = (
    ("memory://{agent}/{memory_id}", memory, "memory"),
    ("activity://{agent}", activity, "activity"),
)
