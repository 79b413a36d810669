"""Tool errors: every failure of a tool is an MCP tool error (`isError`) carrying a problem.

The problem is the HTTP API's (memledger/http/problems.py maps ledger/errors.py to codes, and
this module reuses that one table): `{"code", "detail", "errors"?}`, plus `status` (the HTTP
status the same error answers) and, when they apply, `current_version` and `retry_after`. A
model reads one line of JSON, never a traceback: anything unexpected is `internal`, logged here.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from memledger.http.problems import FieldError, HttpProblem, problem_for

__all__ = ["invalid", "problem_of", "render", "tool_error", "tool_result", "unexpected", "validation_problem"]

log = logging.getLogger("memledger.mcp")


def render(value: Any) -> str:
    """Compact JSON (datetimes as ISO 8601), the text a model reads."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def tool_result(value: dict[str, Any]) -> CallToolResult:
    """A successful call: the JSON as text, and as structured content for clients that read it."""
    structured = orjson.loads(render(value))
    text = TextContent(type="text", text=render(value))
    return CallToolResult(content=[text], structured_content=structured)


def problem_of(error: BaseException) -> dict[str, Any]:
    """The problem body of an error (the same code and detail the HTTP API answers)."""
    problem = error if isinstance(error, HttpProblem) else problem_for(error)
    if problem.status == 500:
        log.error("unexpected %s in a tool call", type(error).__name__, exc_info=error)
    body: dict[str, Any] = {"code": problem.code, "detail": problem.detail, "status": problem.status}
    if problem.errors:
        body["errors"] = [e.model_dump() for e in problem.errors]
    body.update({k: v for k, v in problem.extra.items() if v is not None})
    return body


def tool_error(error: BaseException) -> CallToolResult:
    body = problem_of(error)
    return CallToolResult(content=[TextContent(type="text", text=render(body))], structured_content=body,
                          is_error=True)


def validation_problem(error: ValidationError) -> HttpProblem:
    """Arguments that fail their schema: `invalid`, each failing argument in `errors` (as HTTP's 422)."""
    fields = [FieldError(field=".".join(str(p) for p in x["loc"]),
                         message=str(x["msg"]).removeprefix("Value error, ")) for x in error.errors()]
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields) or "the arguments are not valid"
    return HttpProblem(422, "invalid", "Invalid arguments", detail, errors=fields)


def unexpected(names: list[str]) -> HttpProblem:
    """Arguments a tool does not take (refused, as the API refuses an unknown field)."""
    fields = [FieldError(field=n, message="Extra inputs are not permitted") for n in names]
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields)
    return HttpProblem(422, "invalid", "Invalid arguments", detail, errors=fields)


def invalid(field: str, message: str) -> HttpProblem:
    return HttpProblem(422, "invalid", "Invalid arguments", f"{field}: {message}",
                       errors=[FieldError(field=field, message=message)])
