"""Write routes: each turns a request into one command for the App and answers its receipt.

    POST   /v1/memories                  StoreMemory       201
    PATCH  /v1/memories/{id}             UpdateMemory      200 (If-Match)
    POST   /v1/memories/{id}/tags        TagMemory         200 (If-Match; tags in the body)
    DELETE /v1/memories/{id}/tags/{tag}  UntagMemory       200 (If-Match; one tag in the path)
    DELETE /v1/memories/{id}             ForgetMemory      200 (If-Match; ?reason=)
    POST   /v1/memories/{id}/recalls     RecordRecall      200
    POST   /v1/commands                  any commands      200, one result each (JSON array or NDJSON)
    POST   /v1/sessions                  IngestSession     202 (queue position and estimate)

Which agent a change is for: the key's agent; else `agent_id` (body or query); else the
memory's owner as the read model knows it. The org is always the key's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from commands import wire
from commands.models import name_new_subject, new_subject_id
from ledger.errors import CommandError, InvalidCommand, RateLimited, VersionConflict
from ledger.eventlog import Outcome, Receipt
from memledger.app import App
from memledger.principal import Principal

from . import headers as h
from .auth import caller, principal_app
from .models import (
    CommandResult,
    ReceiptOut,
    RecallIn,
    SessionIn,
    SessionReceiptOut,
    StoreIn,
    TagsIn,
    UpdateIn,
)
from .middleware import PARSED_BODY
from .problems import PROBLEMS, FieldError, HttpProblem, problem_for, row_of

__all__ = ["router", "store"]

router = APIRouter(prefix="/v1", tags=["writes"])
#: Most commands one batch request takes.
MAX_BATCH = 1000

AppDep = Annotated[App, Depends(principal_app)]
CallerDep = Annotated[Principal, Depends(caller)]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                       description="A retry with the same key returns the original receipt.")]
IfMatch = Annotated[str | None, Header(alias="If-Match", description='The memory\'s ETag (its version), e.g. "3".')]
AgentQuery = Annotated[str | None, Query(max_length=128, description="The memory's agent (default: the key's).")]


@router.post("/memories", status_code=201, response_model=ReceiptOut, responses=PROBLEMS)
def store_memory(body: StoreIn, response: Response, app: AppDep, who: CallerDep, idempotency_key: IdemKey = None,
                 ) -> ReceiptOut:
    """Store a memory. Answers its receipt; `ETag` is its version, `X-Consistency-Token` its position."""
    receipt, headers = store(app, who, body, idempotency_key)
    response.headers.update(headers)
    return receipt


def store(app: App, who: Principal, body: StoreIn, idempotency_key: str | None) -> tuple[ReceiptOut, dict[str, str]]:
    """`POST /v1/memories` from a checked body (the route's, or the fast path's): the receipt and the
    response's headers (Location, ETag, X-Consistency-Token, X-RateLimit-*)."""
    agent = _agent(app, who, body.agent_id)
    memory_id = body.memory_id or new_subject_id("mem", who.org_id, agent, idempotency_key)
    fields = body.model_dump(exclude_none=True, exclude={"agent_id", "memory_id"})
    command = {"type": "StoreMemory", "memory_id": memory_id, **fields}
    receipt = _send(app, who, command, agent, idempotency_key, None)
    headers = {"Location": f"/v1/memories/{memory_id}", **h.receipt_headers(receipt), **_rate(app)}
    return _receipt(receipt, memory_id), headers


@router.patch("/memories/{memory_id}", response_model=ReceiptOut, responses=PROBLEMS)
def update_memory(memory_id: str, body: UpdateIn, response: Response, app: AppDep, who: CallerDep,
                  if_match: IfMatch = None, idempotency_key: IdemKey = None) -> ReceiptOut:
    """Change a memory's content, importance, metadata or expiry."""
    agent = _agent(app, who, body.agent_id, memory_id)
    fields = body.model_dump(exclude_none=True, exclude={"agent_id"})
    if not body.clear_expiry:
        fields.pop("clear_expiry", None)
    command = {"type": "UpdateMemory", "memory_id": memory_id, **fields}
    receipt = _send(app, who, command, agent, idempotency_key, if_match)
    return _answer(app, response, receipt, memory_id)


@router.post("/memories/{memory_id}/tags", response_model=ReceiptOut, responses=PROBLEMS)
def tag_memory(memory_id: str, body: TagsIn, response: Response, app: AppDep, who: CallerDep,
               if_match: IfMatch = None, idempotency_key: IdemKey = None) -> ReceiptOut:
    """Add tags to a memory."""
    agent = _agent(app, who, body.agent_id, memory_id)
    command = {"type": "TagMemory", "memory_id": memory_id, "tags": list(body.tags)}
    receipt = _send(app, who, command, agent, idempotency_key, if_match)
    return _answer(app, response, receipt, memory_id)


@router.delete("/memories/{memory_id}/tags/{tag}", response_model=ReceiptOut, responses=PROBLEMS)
def untag_memory(memory_id: str, tag: str, response: Response, app: AppDep, who: CallerDep,
                 agent_id: AgentQuery = None, if_match: IfMatch = None, idempotency_key: IdemKey = None,
                 ) -> ReceiptOut:
    """Remove one tag from a memory."""
    agent = _agent(app, who, agent_id, memory_id)
    command = {"type": "UntagMemory", "memory_id": memory_id, "tags": [tag]}
    receipt = _send(app, who, command, agent, idempotency_key, if_match)
    return _answer(app, response, receipt, memory_id)


@router.delete("/memories/{memory_id}", response_model=ReceiptOut, responses=PROBLEMS)
def forget_memory(memory_id: str, response: Response, app: AppDep, who: CallerDep, agent_id: AgentQuery = None,
                  reason: Annotated[str | None, Query(max_length=500)] = None, if_match: IfMatch = None,
                  idempotency_key: IdemKey = None) -> ReceiptOut:
    """Forget a memory (its history stays in the ledger); later changes answer 410."""
    agent = _agent(app, who, agent_id, memory_id)
    command = {"type": "ForgetMemory", "memory_id": memory_id, **({"reason": reason} if reason else {})}
    receipt = _send(app, who, command, agent, idempotency_key, if_match)
    return _answer(app, response, receipt, memory_id)


@router.post("/memories/{memory_id}/recalls", response_model=ReceiptOut, responses=PROBLEMS)
def record_recall(memory_id: str, body: RecallIn, response: Response, app: AppDep, who: CallerDep,
                  idempotency_key: IdemKey = None) -> ReceiptOut:
    """Record that a memory was recalled (feeds trending and recall counts)."""
    agent = _agent(app, who, body.agent_id, memory_id)
    command = {"type": "RecordRecall", "memory_id": memory_id, **body.model_dump(exclude_none=True,
                                                                                exclude={"agent_id"})}
    receipt = _send(app, who, command, agent, idempotency_key, None)
    return _answer(app, response, receipt, memory_id)


@router.post("/sessions", status_code=202, response_model=SessionReceiptOut, responses=PROBLEMS)
def ingest_session(body: SessionIn, request: Request, response: Response, app: AppDep, who: CallerDep,
                   idempotency_key: IdemKey = None) -> SessionReceiptOut:
    """Queue a raw session (its messages, or one `session_data` text) for background extraction."""
    if (body.messages is None) == (body.session_data is None):
        raise _invalid("body", "give either messages or session_data")
    agent = _agent(app, who, body.agent_id)
    session_id = body.session_id or new_subject_id("ses", who.org_id, agent, idempotency_key)
    transcript = ([m.model_dump(mode="json", exclude_none=True) for m in body.messages] if body.messages
                  else [{"role": "user", "content": body.session_data}])
    command = {"type": "IngestSession", "session_id": session_id, "transcript": transcript,
               **body.model_dump(mode="json", exclude_none=True, include={"user_id", "metadata"}),
               "org_id": who.org_id, "agent_id": agent, "idempotency_key": idempotency_key}
    outcome = app.ingest_many([command])[0]
    if isinstance(outcome, CommandError):
        raise outcome
    response.headers.update(h.receipt_headers(outcome))
    _rate_headers(app, response)
    position = app.queue_position(outcome)
    estimate = request.app.state.ops.estimate(position)
    return SessionReceiptOut(session_id=session_id, partition=outcome.partition, stream_id=outcome.stream_id,
                             duplicate=outcome.duplicate, queued_at=datetime.now(timezone.utc),
                             queue_position=position, estimated_processing_s=estimate)


@router.post("/commands", response_model=list[CommandResult], responses=PROBLEMS, openapi_extra={
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "maxItems": MAX_BATCH, "items": {"type": "object"}}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "One command object per line."}}}}})
async def send_commands(request: Request, app: AppDep, who: CallerDep) -> Response:
    """Send any commands (each with its `type`) in one round trip; one result each, in order.

    `org_id` defaults to the key's org and `agent_id` to the key's agent. A command that is
    refused (invalid, another org's, rate-limited) costs no other command its place.
    """
    body = await request.body()  # read here, in the event loop; parsed and sent in a worker thread
    parsed = getattr(request.state, PARSED_BODY, None)  # BodyGuard's parse of a JSON body
    content_type = request.headers.get("content-type", "")
    answer, headers = await run_in_threadpool(send_batch, app, who, body, parsed, content_type)
    return Response(answer, media_type="application/json", headers=headers)


def send_batch(app: App, who: Principal, body: bytes, parsed: Any,
                content_type: str) -> tuple[bytes, dict[str, str]]:
    """`POST /v1/commands` (the route's, or the fast path's): the batch's results as JSON (a list of
    `CommandResult`, encoded without a validation pass per item) and the rate-limit headers."""
    items = _batch(body, parsed, content_type)
    commands = [_defaults(i, who) for i in items if isinstance(i, dict)]
    sent = iter(app.send_many(commands) if commands else [])
    outcomes: list[Outcome] = [i if isinstance(i, CommandError) else next(sent) for i in items]
    results = [_result(n, item, outcome) for n, (item, outcome) in enumerate(zip(items, outcomes))]
    return orjson.dumps(results), _rate(app)


# -- helpers ----------------------------------------------------------------------------------


def _agent(app: App, who: Principal, given: str | None, memory_id: str | None = None) -> str:
    """The agent a write is for: the key's, the one named, or (for a change) the memory's owner."""
    if who.agent_id is not None:
        return given or who.agent_id  # naming another agent is refused by the App (404)
    if given is not None:
        return given
    if memory_id is not None:
        return str(app.get(None, memory_id)["agent_id"])
    raise _invalid("body.agent_id", "name the agent (agent_id): this key is not bound to one")


def _send(app: App, who: Principal, command: dict[str, Any], agent: str, idempotency_key: str | None,
          if_match: str | None) -> Receipt:
    expected = h.expected_version(if_match)
    full = {**command, "org_id": who.org_id, "agent_id": agent, "idempotency_key": idempotency_key,
            "expected_version": expected}
    try:
        return app.send({k: v for k, v in full.items() if v is not None})
    except VersionConflict as e:
        if expected is None:
            raise
        raise HttpProblem(412, "precondition_failed", "Precondition failed",
                          f"If-Match asked for version {expected}; the memory is at version {e.current_version}",
                          headers={"ETag": h.etag(e.current_version)}, current_version=e.current_version) from None


def _answer(app: App, response: Response, receipt: Receipt, memory_id: str) -> ReceiptOut:
    response.headers.update(h.receipt_headers(receipt))
    _rate_headers(app, response)
    return _receipt(receipt, memory_id)


def _receipt(receipt: Receipt, memory_id: str) -> ReceiptOut:
    return ReceiptOut(memory_id=memory_id, partition=receipt.partition, stream_id=receipt.stream_id,
                      version=receipt.subject_version, duplicate=receipt.duplicate, event_ids=list(receipt.event_ids))


def _rate_headers(app: App, response: Response) -> None:
    response.headers.update(_rate(app))


def _rate(app: App) -> dict[str, str]:
    """X-RateLimit-*: the org's bucket (its capacity, what is left, seconds until full again)."""
    limit, remaining, full_in = app.rate_limit()
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(full_in))}


def _invalid(field: str, message: str) -> HttpProblem:
    return HttpProblem(422, "invalid", "Invalid request", f"{field}: {message}",
                       errors=[FieldError(field=field, message=message)])


def _batch(body: bytes, parsed: Any, content_type: str) -> list[dict[str, Any] | CommandError]:
    """The commands of a batch body: a JSON array, or NDJSON (a bad line fails alone)."""
    if content_type.split(";")[0].strip().lower() == "application/x-ndjson":
        lines = [line for line in body.split(b"\n") if line.strip()]
        items = [_object(_loads(line)) for line in lines]
    else:
        value = parsed if parsed is not None else wire.loads(body)  # BodyGuard refused malformed JSON
        if not isinstance(value, list):
            raise _invalid("body", "send a JSON array of commands (or NDJSON, one per line)")
        items = [_object(v) for v in value]
    if len(items) > MAX_BATCH:
        raise HttpProblem(413, "too_large", "Too many commands", f"a batch takes at most {MAX_BATCH} commands")
    return items


def _loads(line: bytes) -> Any:
    try:
        return wire.loads(line)
    except InvalidCommand as e:
        return e


def _object(value: Any) -> dict[str, Any] | CommandError:
    if isinstance(value, CommandError) or isinstance(value, dict):
        return value
    return InvalidCommand(f"expected a command object with a `type`, got a JSON {type(value).__name__}")


def _defaults(command: dict[str, Any], who: Principal) -> dict[str, Any]:
    command.setdefault("org_id", who.org_id)
    if who.agent_id is not None:
        command.setdefault("agent_id", who.agent_id)
    return name_new_subject(command)


def _result(index: int, item: dict[str, Any] | CommandError, outcome: Outcome) -> dict[str, Any]:
    """One `CommandResult`, every field in the schema's order (what the response model would give)."""
    subject = _subject(item)
    if isinstance(outcome, Receipt):
        return {**_EMPTY_RESULT, "index": index, "ok": True, "status": 200, "subject_id": subject,
                "partition": outcome.partition, "stream_id": outcome.stream_id, "version": outcome.subject_version,
                "duplicate": outcome.duplicate, "consistency_token": h.token(outcome)}
    problem = problem_for(outcome)
    return {**_EMPTY_RESULT, "index": index, "ok": False, "status": row_of(outcome).status, "subject_id": subject,
            "code": problem.code, "detail": problem.detail,
            "current_version": outcome.current_version if isinstance(outcome, VersionConflict) else None,
            "retry_after": outcome.retry_after if isinstance(outcome, RateLimited) else None}


#: A `CommandResult` with every field empty, in the schema's order.
_EMPTY_RESULT: dict[str, Any] = dict.fromkeys(CommandResult.model_fields)


def _subject(item: Mapping[str, Any] | CommandError) -> str | None:
    if isinstance(item, CommandError):
        return None
    for field in ("memory_id", "session_id"):
        if isinstance(item.get(field), str):
            return str(item[field])
    return None
