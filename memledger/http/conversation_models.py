"""Bodies of the working-memory routes (memledger/http/conversations.py), as pydantic models.

Request fields reuse the command models' types, so a message is checked as strictly as the
AppendMessage it becomes; the org is never a body field (it is the API key's).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from commands.models import MAX_MESSAGE, Id, Metadata, Role

__all__ = ["CloseIn", "MessageIn", "MessageOut", "MessageReceiptOut", "MessagesOut"]


class MessageIn(BaseModel):
    """One message of a conversation. `agent_id` may be left out when the key is bound to an agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: Id | None = None
    role: Role
    content: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE)]
    metadata: Metadata = Field(default_factory=dict)


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: Id | None = None


class MessageReceiptOut(BaseModel):
    """Proof of an append. `seq` is the message's number in its session (also its ETag)."""

    session_id: str
    seq: int
    partition: int
    stream_id: str
    duplicate: bool = Field(description="True for an idempotent retry: the original receipt, nothing new.")
    event_ids: list[str]


class MessageOut(BaseModel):
    seq: int
    role: str
    content: str
    metadata: dict[str, Any]
    at: str
    position: str = Field(description="The message's stream id in its partition.")


class MessagesOut(BaseModel):
    """A conversation's last messages, oldest first, and where they were read from."""

    session_id: str
    agent_id: str
    source: Literal["cache", "database"] = Field(description="The Redis cache, or PostgreSQL.")
    messages: list[MessageOut]
    status: str | None = Field(None, description="open, closed, summarized or failed (read from PostgreSQL).")
    summary: str | None = Field(None, description="With summary=true: the older part's summary.")
    summary_through: int | None = Field(None, description="The last message the summary covers.")
    cache_error: str | None = Field(None, description="Why the cache was not used (Redis unreachable).")
