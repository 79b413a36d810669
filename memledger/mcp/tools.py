"""The tools: names, argument schemas and descriptions written for a model; each a thin
adapter that runs one function of memledger/mcp/calls.py on the caller's App.

Arguments reuse the command models' types (commands/models.py: `Content`, `Tags`, `Id`,
`Importance`, ...), so the JSON schema a model sees is the one the ledger enforces, and a call
that breaks it is refused as HTTP refuses the same body: code `invalid`, each argument in
`errors` (memledger/mcp/server.py turns the SDK's validation error into that problem).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from commands.models import Content, Id, Importance, MessageText, Metadata, Role, Tags, Timestamp
from ledger.events import MemoryType, Message

from . import calls
from .problems import tool_error, tool_result

if TYPE_CHECKING:
    from .scope import Caller, Scope

__all__ = ["TOOLS", "invoke"]

T = TypeVar("T")
Ctx = Context[Any, Any]

# -- arguments shared by several tools (descriptions are what the model reads) ------------------

MemoryId = Annotated[Id, Field(description="The memory's id, as store_memory or search_memories gave it.")]
AgentArg = Annotated[Id | None, Field(
    description="The agent whose memory this is. Leave it out: it defaults to your key's agent (or, "
                "for a change, to the memory's owner).")]
Expected = Annotated[int | None, Field(ge=1, description=(
    "Optimistic concurrency: apply only if the memory is still at this version (the `version` a previous "
    "call returned); else the call fails with code version_conflict and current_version. Use it when "
    "retrying a change, so an already applied change is not applied twice."))]
IdemKey = Annotated[str | None, Field(min_length=1, max_length=200, description=(
    "Idempotency key: a retried call with the same key returns the original result and changes nothing "
    "(remembered for days, across sessions). Optional."))]
Token = Annotated[str | None, Field(max_length=64, description=(
    "The consistency_token a write returned: wait (up to 5 s) until that write is readable."))]


async def invoke(ctx: Ctx, call: Callable[[Caller], dict[str, Any]]) -> CallToolResult:
    """Run `call` on the caller's App (memledger/mcp/scope.py); its JSON, or its problem as a tool error."""
    scope: Scope = getattr(ctx.mcp_server, "scope")
    try:
        return tool_result(await scope.run(ctx, call))
    except Exception as error:  # noqa: BLE001 - a LedgerError or HttpProblem; anything else is
        return tool_error(error)  # `internal` (logged), never a traceback to the model


def _given(**args: Any) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None}


# -- writes -------------------------------------------------------------------------------------


async def store_memory(
    ctx: Ctx,
    content: Annotated[Content, Field(description="The memory itself, in plain words (up to 64 KiB).")],
    tags: Annotated[Tags, Field(description="Short labels to find it again, e.g. [\"diet\"].")] = (),
    importance: Annotated[Importance, Field(description="0.0 (trivia) to 1.0 (never forget).")] = 0.5,
    memory_type: Annotated[MemoryType, Field(description="note, fact, preference, decision, summary.")
                           ] = "note",
    metadata: Annotated[Metadata | None, Field(description="Any small JSON object to keep with it.")] = None,
    expires_at: Annotated[Timestamp | None, Field(description="ISO 8601 time it is forgotten at.")] = None,
    session_id: Annotated[Id | None, Field(description="The conversation it came from, if any.")] = None,
    memory_id: Annotated[Id | None, Field(description="Your own id for it; leave out to get one.")] = None,
    agent_id: AgentArg = None,
    idempotency_key: IdemKey = None,
) -> CallToolResult:
    """Remember something for later: a fact, a preference, a decision, a note.

    Use it when the user tells you something worth keeping beyond this conversation. Returns
    {memory_id, version, duplicate, consistency_token}. Retry-safe: calling it again with the same
    arguments in the same session returns the same memory_id with duplicate=true and stores nothing;
    to store identical content twice on purpose, pass distinct idempotency_key values.
    """
    args = _given(content=content, tags=list(tags), importance=importance, memory_type=memory_type,
                  metadata=metadata, expires_at=expires_at, session_id=session_id, memory_id=memory_id,
                  agent_id=agent_id, idempotency_key=idempotency_key)
    return await invoke(ctx, lambda c: calls.store(c, args))


async def update_memory(
    ctx: Ctx,
    memory_id: MemoryId,
    content: Annotated[Content | None, Field(description="The new content (replaces the old).")] = None,
    importance: Annotated[Importance | None, Field(description="The new importance, 0.0 to 1.0.")] = None,
    metadata: Annotated[Metadata | None, Field(description="New metadata (replaces the old).")] = None,
    expires_at: Annotated[Timestamp | None, Field(description="A new expiry time (ISO 8601).")] = None,
    clear_expiry: Annotated[bool, Field(description="True to make it never expire.")] = False,
    expected_version: Expected = None,
    agent_id: AgentArg = None,
    idempotency_key: IdemKey = None,
) -> CallToolResult:
    """Correct or refine a memory you stored: new content, importance, metadata or expiry.

    Use it when a remembered fact changed (prefer it over storing a contradicting memory). Give at
    least one field to change. Returns {memory_id, version, duplicate, consistency_token}. A
    forgotten memory cannot change (code forgotten); an unknown one is code not_found.
    """
    args = _given(content=content, importance=importance, metadata=metadata, expires_at=expires_at,
                  clear_expiry=clear_expiry or None, expected_version=expected_version, agent_id=agent_id,
                  idempotency_key=idempotency_key)
    return await invoke(ctx, lambda c: calls.update(c, memory_id, args))


async def tag_memory(
    ctx: Ctx,
    memory_id: MemoryId,
    add: Annotated[Tags, Field(description="Tags to add, e.g. [\"work\", \"urgent\"].")] = (),
    remove: Annotated[Tags, Field(description="Tags to remove.")] = (),
    expected_version: Expected = None,
    agent_id: AgentArg = None,
    idempotency_key: IdemKey = None,
) -> CallToolResult:
    """Add tags to a memory, remove tags from it, or both (added first, then removed).

    Use it to file a memory so search_memories can filter on it. Returns {memory_id, version,
    duplicate, consistency_token}.
    """
    args = _given(add=list(add), remove=list(remove), expected_version=expected_version, agent_id=agent_id,
                  idempotency_key=idempotency_key)
    return await invoke(ctx, lambda c: calls.tag(c, memory_id, args))


async def forget_memory(
    ctx: Ctx,
    memory_id: MemoryId,
    reason: Annotated[str | None, Field(max_length=500, description="Why, for the record.")] = None,
    expected_version: Expected = None,
    agent_id: AgentArg = None,
    idempotency_key: IdemKey = None,
) -> CallToolResult:
    """Forget a memory: it no longer appears in searches or reads (its history stays auditable).

    Use it when the user asks you to forget something or a memory is wrong beyond correcting.
    It is final: a forgotten memory takes no further changes (code forgotten).
    """
    args = _given(reason=reason, expected_version=expected_version, agent_id=agent_id,
                  idempotency_key=idempotency_key)
    return await invoke(ctx, lambda c: calls.forget(c, memory_id, args))


async def ingest_session(
    ctx: Ctx,
    messages: Annotated[list[Message] | None, Field(min_length=1, description=(
        "The conversation: [{role: user|assistant|system|tool, content}], oldest first."))] = None,
    text: Annotated[str | None, Field(min_length=1, description=(
        "Or the whole conversation as one text (stored as one user message).")) ] = None,
    session_id: Annotated[Id | None, Field(description="Your id for the conversation (optional).")] = None,
    user_id: Annotated[Id | None, Field(description="The user the conversation was with.")] = None,
    metadata: Annotated[Metadata | None, Field(description="Any small JSON object to keep with it.")] = None,
    agent_id: AgentArg = None,
    idempotency_key: IdemKey = None,
) -> CallToolResult:
    """Hand a finished conversation to background extraction, which stores its memories and summary.

    Use it at the end of a conversation instead of storing every detail yourself. Give either
    messages or text. Returns {session_id, duplicate, consistency_token, queue_position}; the
    extracted memories appear later. Retry-safe like store_memory.
    """
    turns = [m.model_dump(mode="json", exclude_none=True) for m in messages] if messages else None
    args = _given(messages=turns, text=text, session_id=session_id, user_id=user_id, metadata=metadata,
                  agent_id=agent_id, idempotency_key=idempotency_key)
    return await invoke(ctx, lambda c: calls.ingest(c, args))


async def append_message(
    ctx: Ctx,
    role: Annotated[Role, Field(description="Who said it: user, assistant, system or tool.")],
    content: Annotated[MessageText, Field(description="What was said, as said.")],
    session_id: Annotated[Id | None, Field(description=(
        "The conversation. Leave it out on the first message to start a new one, then pass the "
        "session_id it returns with every later message."))] = None,
    metadata: Annotated[Metadata | None, Field(description="Any small JSON object to keep with it.")] = None,
    agent_id: AgentArg = None,
    idempotency_key: IdemKey = None,
) -> CallToolResult:
    """Add one message to a conversation as it happens (working memory); the first one starts it.

    Use it to keep the conversation itself, message by message, so recent_messages can give it
    back later. Returns {session_id, seq, duplicate, consistency_token}; seq is the message's
    place in the conversation. A closed conversation takes no more messages (code session_closed).
    Identical messages are legitimate, so only an idempotency_key makes a retry safe.
    """
    args = _given(role=role, content=content, metadata=metadata, agent_id=agent_id, idempotency_key=idempotency_key)
    return await invoke(ctx, lambda c: calls.append_message(c, session_id, args))


async def close_session(
    ctx: Ctx,
    session_id: Annotated[Id, Field(description="The conversation to close.")],
    agent_id: AgentArg = None,
    idempotency_key: IdemKey = None,
) -> CallToolResult:
    """End a conversation: it takes no more messages, and background extraction stores its summary
    and the memories in it (as ingest_session does). Returns {session_id, closed, consistency_token}."""
    return await invoke(ctx, lambda c: calls.close_session(c, session_id, agent_id, idempotency_key))


# -- reads --------------------------------------------------------------------------------------


async def search_memories(
    ctx: Ctx,
    text: Annotated[str | None, Field(max_length=4096, description="Words to find in the content.")] = None,
    tags: Annotated[Tags, Field(description="Only memories with these tags.")] = (),
    match: Annotated[Literal["any", "all"], Field(description="With several tags: any, or all.")] = "any",
    agent_id: Annotated[Id | None, Field(description="Only this agent's memories.")] = None,
    min_importance: Annotated[Importance | None, Field(description="Only at least this important.")] = None,
    memory_type: Annotated[MemoryType | None, Field(description="Only this kind of memory.")] = None,
    session_id: Annotated[Id | None, Field(description="Only memories from this conversation.")] = None,
    since: Annotated[datetime | None, Field(description="Only stored from this time (ISO 8601).")] = None,
    until: Annotated[datetime | None, Field(description="Only memories stored before this time.")] = None,
    order: Annotated[Literal["recent", "importance"], Field(description="Newest first, or most important.")
                     ] = "recent",
    limit: Annotated[int, Field(ge=1, le=100, description="How many to return (1-100).")] = 10,
    cursor: Annotated[str | None, Field(max_length=2048, description=(
        "next_cursor of the previous call, with the same filters, for the next page."))] = None,
    as_of: Annotated[datetime | None, Field(description=(
        "What the agent (agent_id, required then) knew at this time, instead of now."))] = None,
    mode: Annotated[Literal["auto", "hybrid", "semantic", "text"], Field(description=(
        "How text matches. hybrid: by meaning and by words, fused (finds paraphrases); semantic: by "
        "meaning only; text: full-text words plus every filter, paged by cursor. auto (default): "
        "hybrid when you give a text and the server has semantic search, else text."))] = "auto",
    consistent_with: Token = None,
) -> CallToolResult:
    """Find memories: by meaning or words in their content, tags, agent, importance, type,
    conversation or time.

    Use it before answering anything that may depend on what you were told earlier; phrase text
    as a question or a description, it need not share words with the memory. With no arguments
    it returns the most recent memories. Returns {memories: [...], next_cursor, mode}; hybrid and
    semantic hits carry a score; pass next_cursor back (text mode) to get more.
    """
    args = _given(text=text, tags=tuple(tags), match=match, agent_id=agent_id, min_importance=min_importance,
                  memory_type=memory_type, session_id=session_id, since=since, until=until, order=order,
                  limit=limit, cursor=cursor, as_of=as_of, mode=mode, consistent_with=consistent_with)
    return await invoke(ctx, lambda c: calls.search(c, args))


async def get_memory(
    ctx: Ctx,
    memory_id: MemoryId,
    as_of: Annotated[datetime | None, Field(description="As it stood at this time (ISO 8601), not now.")
                     ] = None,
    agent_id: AgentArg = None,
    consistent_with: Token = None,
) -> CallToolResult:
    """Read one memory in full (content, tags, importance, metadata, version), now or as it was at `as_of`.

    Unknown, forgotten or expired memories are code not_found.
    """
    return await invoke(ctx, lambda c: calls.get(c, memory_id, agent_id, as_of, consistent_with))


async def memory_history(ctx: Ctx, memory_id: MemoryId, agent_id: AgentArg = None,
                         consistent_with: Token = None) -> CallToolResult:
    """Every change ever made to one memory, oldest first: what changed, when, and by which key.

    Use it to explain how a memory came to be what it is, or to recover a forgotten one's content.
    """
    return await invoke(ctx, lambda c: calls.history(c, memory_id, agent_id, consistent_with))


async def recent_messages(
    ctx: Ctx,
    session_id: Annotated[Id, Field(description="The conversation.")],
    last: Annotated[int, Field(ge=1, le=1000, description="How many of its last messages (1-1000).")] = 10,
    with_summary: Annotated[bool, Field(description=(
        "Also the summary of the older part of a long conversation (summary + last N)."))] = False,
    agent_id: Annotated[Id | None, Field(description="The conversation's agent (default: your key's).")] = None,
    consistent_with: Token = None,
) -> CallToolResult:
    """The last messages of a conversation, oldest first: what was just said, to pick up the thread.

    Returns {session_id, messages: [{seq, role, content, at, ...}], source, status, summary?};
    source says whether the fast cache or the database answered.
    """
    return await invoke(ctx, lambda c: calls.recent_messages(c, session_id, last, with_summary, agent_id,
                                                             consistent_with))


async def memory_stats(ctx: Ctx, consistent_with: Token = None) -> CallToolResult:
    """Your organisation in numbers: per agent (live memories, stored, updated, forgotten, expired,
    recalls, sessions), the 20 most used tags, and the hierarchy (sessions, summaries, extracted
    and directly stored memories)."""
    return await invoke(ctx, lambda c: calls.stats(c, consistent_with))


async def trending(
    ctx: Ctx,
    hours: Annotated[int, Field(ge=1, le=720, description="Over the last this many hours.")] = 24,
    top: Annotated[int, Field(ge=1, le=100, description="How many tags and memories.")] = 10,
) -> CallToolResult:
    """The tags used most and the memories recalled most lately, across your organisation."""
    return await invoke(ctx, lambda c: calls.trending(c, hours, top))


WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
READ = ToolAnnotations(read_only_hint=True)
#: Every tool and its annotations, in the order a client lists them.
TOOLS: tuple[tuple[Callable[..., Any], ToolAnnotations], ...] = (
    (store_memory, WRITE), (search_memories, READ), (get_memory, READ), (update_memory, WRITE),
    (tag_memory, WRITE), (forget_memory, ToolAnnotations(read_only_hint=False, destructive_hint=True)),
    (memory_history, READ), (ingest_session, WRITE), (memory_stats, READ), (trending, READ),
    (append_message, WRITE), (recent_messages, READ), (close_session, WRITE),
)
