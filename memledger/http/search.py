"""`GET /v1/memories/search`: semantic, text and hybrid search, scoped to the key's org (and agent).

Registered before the `/v1/memories/{memory_id}` routes ("search" is not a memory id). Where the
database has no pgvector the answer is 503 `semantic_search_unavailable`, one line of detail.
`consistent_with` waits for the `embeddings` projection, which follows the ledger on its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from memledger.app import App

from . import headers as h
from .auth import principal_app
from .problems import PROBLEMS

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["search"], responses=PROBLEMS)
AppDep = Annotated[App, Depends(principal_app)]
#: Longest a search waits for `consistent_with`, in seconds.
CONSISTENCY_WAIT_S = 5.0


class SearchHitOut(BaseModel):
    memory_id: str
    agent_id: str
    content: str
    tags: list[str]
    importance: float
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    score: float = Field(description="hybrid: reciprocal rank fusion; semantic: cosine similarity; text: ts_rank_cd")
    vector_rank: int | None = Field(description="Rank in the vector ranking (None: not in it).")
    text_rank: int | None = Field(description="Rank in the full-text ranking (None: no word matched).")
    similarity: float | None = None


class SearchOut(BaseModel):
    mode: str
    hits: list[SearchHitOut]


@router.get("/memories/search", response_model=SearchOut)
def search_memories(
    app: AppDep,
    q: Annotated[str, Query(min_length=1, max_length=4096, description="What to look for, in your own words.")],
    mode: Literal["hybrid", "semantic", "text"] = "hybrid",
    agent_id: Annotated[str | None, Query(max_length=128, description="Only this agent.")] = None,
    tag: Annotated[list[str] | None, Query(description="Repeat: every tag must be on the memory.")] = None,
    since: Annotated[datetime | None, Query(description="Updated at or after this time.")] = None,
    until: Annotated[datetime | None, Query(description="Updated before this time.")] = None,
    min_importance: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    consistent_with: Annotated[str | None, Query(max_length=64)] = None,
) -> SearchOut:
    """Memories of the key's org by meaning and words; each hit says which rankings found it."""
    from projections.search import SearchQuery

    if consistent_with is not None:
        app.wait_for(h.token_receipt(consistent_with), CONSISTENCY_WAIT_S, "embeddings")
    query = SearchQuery(app.tenant or "", q, mode, agent_id, tuple(t.lower() for t in tag or ()), since, until,
                        min_importance, limit)
    hits: list[dict[str, Any]] = [hit.as_dict() for hit in app.search(query)]
    return SearchOut(mode=mode, hits=[SearchHitOut(**hit) for hit in hits])
