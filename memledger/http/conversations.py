"""Working memory over HTTP: a conversation appended message by message, its recent messages read back.

    POST /v1/sessions/{id}/messages       AppendMessage   201 (Idempotency-Key; X-Consistency-Token)
    GET  /v1/sessions/{id}/messages       ?last=N&summary=true, from the cache or PostgreSQL
    POST /v1/sessions/{id}/close          CloseSession    200 (then background extraction)

The agent is the key's; else `agent_id` (body, or query on reads); else, for a read or a
close, the conversation's own. The org is always the key's: another org's session is 404.
A read answers `X-Cache-Status: HIT` when the Redis cache answered, `MISS` when PostgreSQL did.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from memledger.app import App
from memledger.principal import Principal

from . import headers as h
from .auth import caller, principal_app
from .conversation_models import CloseIn, MessageIn, MessageOut, MessageReceiptOut, MessagesOut
from .problems import PROBLEMS, FieldError, HttpProblem

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["conversations"])
#: Longest a read waits for `consistent_with`, in seconds.
CONSISTENCY_WAIT_S = 5.0

AppDep = Annotated[App, Depends(principal_app)]
CallerDep = Annotated[Principal, Depends(caller)]
SessionPath = Annotated[str, Path(max_length=128)]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                       description="A retry with the same key returns the original receipt.")]
AgentQuery = Annotated[str | None, Query(max_length=128, description="The session's agent (default: key's)")]
Token = Annotated[str | None, Query(max_length=64, description="An X-Consistency-Token the answer includes.")]
Last = Annotated[int, Query(ge=1, le=10_000, description="How many of the last messages.")]


@router.post("/sessions/{session_id}/messages", status_code=201, response_model=MessageReceiptOut,
             responses=PROBLEMS)
def append_message(session_id: SessionPath, body: MessageIn, response: Response, app: AppDep, who: CallerDep,
                   idempotency_key: IdemKey = None) -> MessageReceiptOut:
    """Append one message; the first one creates the session. 409 once the session is closed."""
    agent = body.agent_id or who.agent_id
    if agent is None:
        raise _invalid("body.agent_id", "name the agent (agent_id): this key is not bound to one")
    command = {"type": "AppendMessage", "org_id": who.org_id, "agent_id": agent, "session_id": session_id,
               "role": body.role, "content": body.content, "metadata": body.metadata,
               "idempotency_key": idempotency_key}
    receipt = app.append_message({k: v for k, v in command.items() if v is not None})
    response.headers.update(h.receipt_headers(receipt))
    response.headers["Location"] = f"/v1/sessions/{session_id}/messages"
    return MessageReceiptOut(session_id=session_id, seq=receipt.subject_version, partition=receipt.partition,
                             stream_id=receipt.stream_id, duplicate=receipt.duplicate,
                             event_ids=list(receipt.event_ids))


@router.get("/sessions/{session_id}/messages", response_model=MessagesOut, responses=PROBLEMS)
def recent_messages(session_id: SessionPath, response: Response, app: AppDep,
                    last: Last = 10,
                    summary: Annotated[bool, Query(description="Also the older part's summary.")] = False,
                    agent_id: AgentQuery = None, consistent_with: Token = None) -> MessagesOut:
    """The last `last` messages, oldest first; `source` (and X-Cache-Status) says where they came from."""
    after = _wait(app, consistent_with)
    found = app.recent_messages(None, session_id, last, agent_id, summary, after)
    response.headers["X-Cache-Status"] = "HIT" if found.source == "cache" else "MISS"
    return MessagesOut(session_id=found.session_id, agent_id=found.agent_id, source=found.source,
                       messages=[MessageOut(**m) for m in found.messages], status=found.status,
                       summary=found.summary, summary_through=found.summary_through,
                       cache_error=found.cache_error)


@router.post("/sessions/{session_id}/close", response_model=MessageReceiptOut, responses=PROBLEMS)
def close_session(session_id: SessionPath, response: Response, app: AppDep, who: CallerDep,
                  body: CloseIn | None = None, idempotency_key: IdemKey = None) -> MessageReceiptOut:
    """Close a conversation: no more messages (409 after); it is summarized in the background."""
    agent = (body.agent_id if body else None) or who.agent_id
    if agent is None:  # an org-wide key: the conversation's own agent (404 when there is none)
        agent = app.recent_messages(None, session_id, 1).agent_id
    receipt = app.close_session(None, session_id, agent, idempotency_key)
    response.headers.update(h.receipt_headers(receipt))
    return MessageReceiptOut(session_id=session_id, seq=receipt.subject_version, partition=receipt.partition,
                             stream_id=receipt.stream_id, duplicate=receipt.duplicate,
                             event_ids=list(receipt.event_ids))


def _wait(app: App, consistent_with: str | None) -> tuple[int, str] | None:
    """Wait for PostgreSQL to hold the write; the position the answer must include."""
    if consistent_with is None:
        return None
    receipt = h.token_receipt(consistent_with)
    if receipt.partition >= app.settings.partitions:
        raise h.token_problem(consistent_with)
    app.wait_for(receipt, CONSISTENCY_WAIT_S, "conversations")
    return receipt.partition, receipt.stream_id


def _invalid(field: str, message: str) -> HttpProblem:
    return HttpProblem(422, "invalid", "Invalid request", f"{field}: {message}",
                       errors=[FieldError(field=field, message=message)])
