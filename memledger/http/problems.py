"""Errors as `application/problem+json` (RFC 9457): one table from ledger/errors.py to HTTP.

Every problem has `type`, `title`, `status`, `detail` and `code` (the domain error's code,
the same word the CLI prints); a validation problem also lists each failing field in
`errors: [{field, message}]`. Choices the table makes:

- A forgotten memory takes no changes: 410 Gone (`forgotten`); it is gone for good, and
  a client must not retry, which 409 would suggest.
- A version conflict is 409, or 412 when the expected version came from `If-Match`.
- Another org's or agent's data, and an agent key writing for another agent, are 404:
  to a key, what is not its own does not exist (never 403, which would confirm it does).
- No traceback ever reaches a client: anything unexpected is a bare 500, logged here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import errors as e

__all__ = ["PROBLEMS", "PROBLEM_TYPE", "FieldError", "HttpProblem", "Problem", "install", "problem_body",
           "problem_for", "problem_response", "status_of"]

log = logging.getLogger("memledger.http")

#: Media type of every error body.
PROBLEM_TYPE = "application/problem+json"
#: Base of each problem's `type` URI (a stable name per code, documented in the README).
TYPE_BASE = "https://memory-ledger.dev/problems/"


#: The error answers every route documents in the OpenAPI spec (all as a `Problem`).
PROBLEMS: dict[int | str, dict[str, Any]] = {
    s: {"description": d, "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for s, d in ((400, "Malformed request"), (401, "No or unknown API key"), (403, "The key's role may not do this"),
                 (404, "No such memory in this org"), (409, "Conflict"), (410, "Memory forgotten"),
                 (412, "If-Match is stale"), (413, "Body too large"), (415, "Not JSON"), (422, "Invalid"),
                 (429, "Rate limited"), (503, "Unavailable"))}


class FieldError(BaseModel):
    field: str = Field(description="Where in the request: e.g. `body.content`, `query.limit`, `header.If-Match`.")
    message: str


class Problem(BaseModel):
    """An error (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="The domain error code: invalid, not_found, version_conflict, rate_limited, ...")
    errors: list[FieldError] | None = None
    current_version: int | None = Field(None, description="On 409/412 version conflicts: the memory's version now.")
    retry_after: float | None = Field(None, description="On 429 and 503: seconds to wait before retrying.")


@dataclass(frozen=True)
class Row:
    status: int
    code: str
    title: str


#: The table: the most specific class first (a subclass before its base).
TABLE: tuple[tuple[type[Exception], Row], ...] = (
    (e.Unauthenticated, Row(401, "unauthenticated", "Unauthenticated")),
    (e.Forbidden, Row(403, "forbidden", "Forbidden")),
    (e.RateLimited, Row(429, "rate_limited", "Too many requests")),
    (e.VersionConflict, Row(409, "version_conflict", "Version conflict")),
    (e.SubjectExists, Row(409, "exists", "Already exists")),
    (e.SubjectForgotten, Row(410, "forgotten", "Memory forgotten")),
    (e.SessionClosed, Row(409, "session_closed", "Session closed")),
    (e.UnknownSubject, Row(404, "unknown_subject", "No such memory or session")),
    (e.SystemOnly, Row(403, "system_only", "Sent only by the system")),
    (e.Unauthorized, Row(404, "not_found", "Not found")),
    (e.InvalidCommand, Row(422, "invalid", "Invalid command")),
    (e.CommandError, Row(422, "rejected", "Command rejected")),
    (e.InvalidQuery, Row(422, "invalid_query", "Invalid query")),
    (e.SessionNotFound, Row(404, "not_found", "Session not found")),
    (e.NotFound, Row(404, "not_found", "Not found")),
    (e.Timeout, Row(503, "timeout", "Read model not caught up")),
    (e.EmbeddingsUnavailable, Row(503, "embeddings_unavailable", "Embeddings endpoint unavailable")),
    (e.StoreUnavailable, Row(503, "unavailable", "Store unavailable")),
    (e.SemanticSearchUnavailable, Row(503, "semantic_search_unavailable", "Semantic search unavailable")),
    (e.ConfigurationError, Row(503, "not_ready", "Service not ready")),
    (e.ProjectionError, Row(503, "read_model", "Read model unavailable")),
    (e.HistoryGap, Row(503, "history_gap", "History unavailable")),
    (e.NotPermitted, Row(403, "forbidden", "Forbidden")),
)
_FALLBACK = Row(500, "internal", "Internal server error")




class HttpProblem(Exception):
    """A problem the HTTP layer itself finds (malformed JSON, a body too large, a stale If-Match...)."""

    def __init__(self, status: int, code: str, title: str, detail: str, *, errors: list[FieldError] | None = None,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.errors, self.headers, self.extra = errors, dict(headers or {}), extra


def row_of(error: BaseException) -> Row:
    for cls, row in TABLE:
        if isinstance(error, cls):
            return row
    return _FALLBACK


def status_of(error: BaseException) -> int:
    return row_of(error).status


def problem_for(error: BaseException) -> HttpProblem:
    """The problem a domain error (`LedgerError`) becomes."""
    if isinstance(error, HttpProblem):
        return error
    row = row_of(error)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(error, e.VersionConflict):
        extra["current_version"] = error.current_version
    if isinstance(error, e.RateLimited):
        extra["retry_after"] = error.retry_after
        headers["Retry-After"] = str(max(1, round(error.retry_after + 0.4999)))
    if row.status == 503:
        headers["Retry-After"] = "1"
    if row.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="memory-ledger"'
    detail = str(error) if row is not _FALLBACK else "an unexpected error; it was logged on the server"
    return HttpProblem(row.status, row.code, row.title, detail, headers=headers, **extra)


def problem_body(problem: HttpProblem) -> dict[str, Any]:
    """The problem document (RFC 9457) of `problem`, as JSON-ready data."""
    return Problem(type=TYPE_BASE + problem.code, title=problem.title, status=problem.status, detail=problem.detail,
                   code=problem.code, errors=problem.errors, **problem.extra).model_dump(exclude_none=True)


def problem_response(problem: HttpProblem) -> JSONResponse:
    return JSONResponse(problem_body(problem), status_code=problem.status, headers=problem.headers,
                        media_type=PROBLEM_TYPE)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_problem(error: RequestValidationError) -> HttpProblem:
    fields = [FieldError(field=_field(x["loc"]), message=str(x["msg"]).removeprefix("Value error, "))
              for x in error.errors()]
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields) or "the request is not valid"
    return HttpProblem(422, "invalid", "Invalid request", detail, errors=fields)


_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 404: "not_found", 405: "method_not_allowed",
               406: "not_acceptable", 413: "too_large", 415: "unsupported_media_type"}


def install(app: FastAPI) -> None:
    """Route every error of `app` through the table."""

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        problem = problem_for(error)
        if problem.status == 500:
            log.error("unexpected %s on %s %s", type(error).__name__, request.method, request.url.path,
                      exc_info=error)
        return problem_response(problem)

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return problem_response(validation_problem(error))

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = _HTTP_CODES.get(error.status_code, "http_error")
        return problem_response(HttpProblem(error.status_code, code, code.replace("_", " ").capitalize(),
                                            str(error.detail), headers=error.headers))

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return problem_response(problem_for(error))

    app.add_exception_handler(HttpProblem, on_problem)
    app.add_exception_handler(e.LedgerError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
