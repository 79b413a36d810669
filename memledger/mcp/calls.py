"""What each tool does, on the caller's App: build one command or query, call the App, render.

Synchronous and free of MCP types: memledger/mcp/tools.py declares the tools (names, argument
schemas, descriptions) and runs these in a worker thread through the caller's `Scope`. Every
result is a compact JSON object; every failure is a `LedgerError` or an `HttpProblem`, which
memledger/mcp/problems.py turns into a tool error.

Which agent a write is for, as in the REST API: the key's agent; else `agent_id`; else (a
change) the memory's owner as the read model knows it. The org is always the key's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from commands.models import new_subject_id
from ledger.errors import CommandError
from ledger.eventlog import Receipt
from memledger.http import headers as h

from .idempotency import derive
from .problems import invalid
from .scope import Caller

__all__ = ["append_message", "close_session", "forget", "get", "history", "ingest", "recent_messages", "search",
           "stats", "store", "tag", "trending", "update"]

Args = dict[str, Any]
#: Memory fields a search result leaves out unless asked (a model rarely needs them).
QUIET_FIELDS = ("org_id", "recall_count", "last_recalled_at", "created_at")


def _agent(caller: Caller, given: str | None, memory_id: str | None = None) -> str:
    """The agent a write is for (see the module docstring)."""
    if caller.principal.agent_id is not None:
        return given or caller.principal.agent_id  # naming another agent is refused by the App (not found)
    if given is not None:
        return given
    if memory_id is not None:
        return str(caller.app.get(None, memory_id)["agent_id"])
    raise invalid("agent_id", "name the agent: this key is not bound to one")


def _send(caller: Caller, command: Args, agent: str) -> Receipt:
    full = {**command, "org_id": caller.principal.org_id, "agent_id": agent}
    return caller.app.send({k: v for k, v in full.items() if v is not None})


def _receipt(receipt: Receipt, memory_id: str) -> Args:
    return {"memory_id": memory_id, "version": receipt.subject_version, "duplicate": receipt.duplicate,
            "consistency_token": h.token(receipt)}


def _memory(row: Args, quiet: bool = False) -> Args:
    """A memory row as a model reads it: no empty fields (and, `quiet`, no bookkeeping ones)."""
    return {k: v for k, v in row.items()
            if v not in (None, {}, []) and not (quiet and k in QUIET_FIELDS)}


# -- writes -------------------------------------------------------------------------------------


def store(caller: Caller, args: Args) -> Args:
    agent = _agent(caller, args.pop("agent_id", None))
    given = args.pop("idempotency_key", None)
    key = derive(caller.session, "store_memory", {**args, "agent_id": agent}, given)
    memory_id = args.pop("memory_id", None) or new_subject_id("mem", caller.principal.org_id, agent, key)
    command = {"type": "StoreMemory", "memory_id": memory_id, "idempotency_key": key, **args}
    receipt = _send(caller, command, agent)
    return _receipt(receipt, memory_id)


def update(caller: Caller, memory_id: str, args: Args) -> Args:
    agent = _agent(caller, args.pop("agent_id", None), memory_id)
    receipt = _send(caller, {"type": "UpdateMemory", "memory_id": memory_id, **args}, agent)
    return _receipt(receipt, memory_id)


def tag(caller: Caller, memory_id: str, args: Args) -> Args:
    agent = _agent(caller, args.pop("agent_id", None), memory_id)
    add, remove = list(args.pop("add", None) or ()), list(args.pop("remove", None) or ())
    if not add and not remove:
        raise invalid("add", "give tags to add, to remove, or both")
    expected, receipt = args.pop("expected_version", None), None
    for kind, tags in (("TagMemory", add), ("UntagMemory", remove)):
        if tags:
            key = args.get("idempotency_key")
            if key is not None and add and remove:  # one key, two commands: each its own
                key = f"{key}/{kind}"
            receipt = _send(caller, {"type": kind, "memory_id": memory_id, "tags": tags, **args,
                                     "expected_version": expected, "idempotency_key": key}, agent)
            # the untag, when there is one, expects the version the tag made (nothing else came between)
            expected = receipt.subject_version if expected is not None else None
    assert receipt is not None
    return _receipt(receipt, memory_id)


def forget(caller: Caller, memory_id: str, args: Args) -> Args:
    agent = _agent(caller, args.pop("agent_id", None), memory_id)
    receipt = _send(caller, {"type": "ForgetMemory", "memory_id": memory_id, **args}, agent)
    return _receipt(receipt, memory_id)


def ingest(caller: Caller, args: Args) -> Args:
    if (args.get("messages") is None) == (args.get("text") is None):
        raise invalid("messages", "give either messages or text")
    agent = _agent(caller, args.pop("agent_id", None))
    given = args.pop("idempotency_key", None)
    key = derive(caller.session, "ingest_session", {**args, "agent_id": agent}, given)
    session_id = args.pop("session_id", None) or new_subject_id("ses", caller.principal.org_id, agent, key)
    text, messages = args.pop("text", None), args.pop("messages", None)
    transcript = messages or [{"role": "user", "content": text}]
    command = {"type": "IngestSession", "session_id": session_id, "transcript": transcript,
               "idempotency_key": key, "org_id": caller.principal.org_id, "agent_id": agent, **args}
    outcome = caller.app.ingest_many([{k: v for k, v in command.items() if v is not None}])[0]
    if isinstance(outcome, CommandError):
        raise outcome
    return {"session_id": session_id, "duplicate": outcome.duplicate, "consistency_token": h.token(outcome),
            "queue_position": caller.app.queue_position(outcome)}


def append_message(caller: Caller, session_id: str | None, args: Args) -> Args:
    """One message of a conversation; the first one creates it (a new id when none is given)."""
    agent = _agent(caller, args.pop("agent_id", None))
    key = args.get("idempotency_key")
    session = session_id or new_subject_id("ses", caller.principal.org_id, agent, key)
    receipt = _send(caller, {"type": "AppendMessage", "session_id": session, **args}, agent)
    return {"session_id": session, "seq": receipt.subject_version, "duplicate": receipt.duplicate,
            "consistency_token": h.token(receipt)}


def close_session(caller: Caller, session_id: str, agent_id: str | None, idempotency_key: str | None) -> Args:
    agent = agent_id or caller.principal.agent_id or caller.app.recent_messages(None, session_id, 1).agent_id
    receipt = caller.app.close_session(None, session_id, agent, idempotency_key)
    return {"session_id": session_id, "closed": True, "duplicate": receipt.duplicate,
            "consistency_token": h.token(receipt)}


# -- reads --------------------------------------------------------------------------------------


def _wait(caller: Caller, consistent_with: str | None, projection: str = "memories") -> None:
    if consistent_with is not None:
        receipt = h.token_receipt(consistent_with)
        if receipt.partition >= caller.app.settings.partitions:
            raise h.token_problem(consistent_with)
        caller.app.wait_for(receipt, projection=projection)


def get(caller: Caller, memory_id: str, agent_id: str | None, as_of: datetime | None,
        consistent_with: str | None) -> Args:
    _wait(caller, consistent_with)
    return _memory(caller.app.get(None, memory_id, agent_id, as_of))


def history(caller: Caller, memory_id: str, agent_id: str | None, consistent_with: str | None) -> Args:
    from projections import NotFound

    _wait(caller, consistent_with, "archive")
    entries = caller.app.history(None, memory_id, agent_id)
    if not entries:
        raise NotFound(f"no memory {memory_id!r} in this org")
    return {"memory_id": memory_id, "events": [_event(e.event.model_dump(mode="json")) for e in entries]}


def _event(event: Args) -> Args:
    keep = ("type", "subject_version", "occurred_at", "actor", "data", "agent_id")
    return {k: event[k] for k in keep if event.get(k) is not None}


#: Filters only the filtered full-text path takes; semantic and hybrid search refuse them.
FILTER_ONLY = ("memory_type", "session_id", "cursor", "as_of")


def search(caller: Caller, args: Args) -> Args:
    """By meaning (`App.search`: hybrid or semantic), or by filters and full text (`App.query`, a
    page at a time, or a point in time with `as_of`). Mode "auto" is hybrid when there is a text
    to search for and the database has pgvector, else the filtered full-text path."""
    _wait(caller, args.pop("consistent_with", None))
    mode = _mode(caller, args)
    if mode == "text":
        return _filtered(caller, args)
    return _by_meaning(caller, "semantic" if mode == "semantic" else "hybrid", args)


def _mode(caller: Caller, args: Args) -> str:
    mode = str(args.pop("mode", "auto"))
    if mode != "auto":
        return mode
    plain = not any(args.get(name) for name in FILTER_ONLY) and (args.get("match") == "all" or
                                                               len(args.get("tags", ())) < 2)
    return "hybrid" if args.get("text") and plain and caller.app.search_unavailable() is None else "text"


def _by_meaning(caller: Caller, mode: Literal["hybrid", "semantic"], args: Args) -> Args:
    from projections.search import SearchQuery

    if not args.get("text"):
        raise invalid("text", f"{mode} search needs a text: say what to look for")
    for name in FILTER_ONLY:
        if args.get(name):
            raise invalid(name, f"{mode} search does not take {name}; use mode text")
    if len(args.get("tags", ())) > 1 and args.get("match") != "all":
        raise invalid("match", f"{mode} search matches all the tags given: pass match all, or use mode text")
    query = SearchQuery(caller.principal.org_id, args["text"], mode, args.get("agent_id"), tuple(args.get("tags", ())),
                        args.get("since"), args.get("until"), args.get("min_importance"), args["limit"])
    hits = [_memory({**h.memory, "score": round(h.score, 6)}, True) for h in caller.app.search(query)]
    return {"memories": hits, "next_cursor": None, "mode": mode}


def _filtered(caller: Caller, args: Args) -> Args:
    from projections import MemoryQuery

    limit, cursor, as_of = args.pop("limit"), args.pop("cursor", None), args.pop("as_of", None)
    after = h.decode_cursor(cursor) if cursor else None
    query = MemoryQuery(caller.principal.org_id, limit=limit + 1, after=after, **args)
    if as_of is not None:
        rows = caller.app.as_of(None, query.agent_id, as_of, query)[:limit]
        return {"memories": [_memory(r, True) for r in rows], "next_cursor": None, "mode": "text"}
    rows = caller.app.query(query).rows
    more = len(rows) > limit
    page = rows[:limit]
    next_cursor = h.encode_cursor(query.page_key(page[-1])) if more else None
    return {"memories": [_memory(r, True) for r in page], "next_cursor": next_cursor, "mode": "text"}


def stats(caller: Caller, consistent_with: str | None) -> Args:
    _wait(caller, consistent_with)
    report: Args = caller.app.stats_report(None, top_tags=20).as_json()
    return report


def recent_messages(caller: Caller, session_id: str, last: int, with_summary: bool, agent_id: str | None,
                    consistent_with: str | None) -> Args:
    after = None
    if consistent_with is not None:
        receipt = h.token_receipt(consistent_with)
        _wait(caller, consistent_with, "conversations")
        after = (receipt.partition, receipt.stream_id)
    found: Args = caller.app.recent_messages(None, session_id, last, agent_id, with_summary, after).as_json()
    return {k: v for k, v in found.items() if v not in (None, [], {})}


def trending(caller: Caller, hours: int, top: int) -> Args:
    report = caller.app.trending(None, hours, top)
    body: Args = report.as_json()
    return body


def feed(caller: Caller, agent_id: str, limit: int) -> Args:
    return {"agent_id": agent_id, "items": caller.app.feed(None, agent_id, limit)}
