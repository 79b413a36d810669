"""The idempotency key of a tool call that writes, so that a retried call never stores twice.

What the MCP SDK offers: a JSON-RPC request id is unique per request within a session (the
spec forbids reusing one), so a client that retries a timed-out `tools/call` sends a NEW id,
and a key derived from (session, request id) would not recognise the retry. What does
recognise it: the call itself. So:

1. an explicit `idempotency_key` argument always wins (a client or model that retries across
   sessions passes the same key; the ledger remembers keys for `MEMLEDGER_IDEMPOTENCY_TTL_SECONDS`);
2. else the tools that create something (store_memory, ingest_session) derive a key from the
   session (the stdio process, or the HTTP `Mcp-Session-Id`) and the canonical JSON of the
   call's arguments: the same call twice in one session is one memory. To store identical
   content twice on purpose, pass distinct `idempotency_key`s;
3. changes (update, tag, forget) are not deduplicated by content: the same change may be
   meant twice (tag, untag, tag again). They take `expected_version` instead, which a retry
   of an applied change fails with `version_conflict`, and an explicit `idempotency_key`.

With no session (stateless HTTP) and no explicit key, nothing is derived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["PREFIX", "derive"]

#: Derived keys start with this, so they never collide with a caller's own.
PREFIX = "mcp:"


def derive(session: str | None, tool: str, arguments: Mapping[str, Any], given: str | None) -> str | None:
    """The key of one call: `given`, else one derived from session and arguments (None: no session)."""
    if given is not None:
        return given
    if session is None:
        return None
    canonical = orjson.dumps({k: v for k, v in arguments.items() if v is not None},
                             option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    digest = hashlib.sha256(f"{session}\0{tool}\0".encode() + canonical).hexdigest()
    return PREFIX + digest[:48]
