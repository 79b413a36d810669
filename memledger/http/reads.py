"""Read routes over the read models, each scoped to the key's org (and agent).

Every read takes `consistent_with=<X-Consistency-Token>`: it first waits (at most
`CONSISTENCY_WAIT_S`) until the read model has applied that write, else answers 503 with
Retry-After. Each read waits for the projection that keeps what it reads: `memories` for
memories, `archive` for history, and the Redis read models (trending, analytics, the feed)
for their own projectors' checkpoints.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Response

from memledger.app import App

from . import headers as h
from .auth import principal_app
from .models import (
    AnalyticsOut,
    FeedOut,
    HierarchyCounts,
    HierarchyOut,
    HistoryEntryOut,
    HistoryOut,
    MemoryOut,
    MemoryPage,
    SessionOut,
    StatsOut,
    TrendingOut,
)
from .middleware import timing_mark
from .problems import PROBLEMS

if TYPE_CHECKING:
    from projections import MemoryQuery
    from projections.query import Row

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["reads"], responses=PROBLEMS)
#: Longest a read waits for `consistent_with`, in seconds.
CONSISTENCY_WAIT_S = 5.0

AppDep = Annotated[App, Depends(principal_app)]
IdPath = Annotated[str, Path(max_length=128)]
Token = Annotated[str | None, Query(max_length=64, description="An X-Consistency-Token: wait until it is readable.")]
Agent = Annotated[str | None, Query(max_length=128, description="Only this agent.")]
Since = Annotated[datetime | None, Query(description="From this time (ISO 8601).")]
Until = Annotated[datetime | None, Query(description="Before this time (ISO 8601).")]


def _wait(app: App, consistent_with: str | None, projection: str = "memories") -> None:
    if consistent_with is not None:
        receipt = h.token_receipt(consistent_with)
        if receipt.partition >= app.settings.partitions:
            raise h.token_problem(consistent_with)
        started = time.perf_counter()
        try:
            app.wait_for(receipt, CONSISTENCY_WAIT_S, projection)
        finally:
            timing_mark("wait", time.perf_counter() - started)


@router.get("/memories", response_model=MemoryPage)
def query_memories(
    app: AppDep, agent_id: Agent = None,
    tag: Annotated[list[str] | None, Query(description="Repeat for several tags.")] = None,
    match: Literal["any", "all"] = "any",
    min_importance: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    since: Since = None, until: Until = None,
    text: Annotated[str | None, Query(max_length=4096, description="Full-text search on content.")] = None,
    memory_type: Annotated[str | None, Query(max_length=32)] = None,
    session_id: Annotated[str | None, Query(max_length=128)] = None,
    order: Literal["recent", "importance"] = "recent",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page.")] = None,
    as_of: Annotated[datetime | None, Query(description="What `agent_id` knew at this time (from history).")] = None,
    consistent_with: Token = None,
) -> Response:
    """Memories of the key's org, filtered and ordered, a page at a time (X-Cache-Status says HIT, MISS or BYPASS)."""
    _wait(app, consistent_with)
    body, cache = memory_page(app, agent_id, tuple(tag or ()), match, min_importance, since, until, text,
                              memory_type, session_id, order, limit, cursor, as_of)
    return Response(body, media_type="application/json", headers={"X-Cache-Status": cache})


def memory_page(app: App, agent_id: str | None = None, tags: tuple[str, ...] = (),
                match: Literal["any", "all"] = "any", min_importance: float | None = None,
                since: datetime | None = None, until: datetime | None = None, text: str | None = None,
                memory_type: str | None = None, session_id: str | None = None,
                order: Literal["recent", "importance"] = "recent", limit: int = 20, cursor: str | None = None,
                as_of: datetime | None = None) -> tuple[bytes, str]:
    """One page of `GET /v1/memories` from checked parameters (the route's, or the fast path's): its
    JSON (a `MemoryPage`) and its cache status."""
    query = page_query(app, agent_id, tags, match, min_importance, since, until, text, memory_type,
                       session_id, order, limit, cursor)
    if as_of is not None:
        rows = app.as_of(None, agent_id, as_of, query)[:limit]  # a point in time is one page
        return page_body(query, rows, "BYPASS", limit, more_pages=False), "BYPASS"
    result = app.query(query)
    return page_body(query, result.rows, result.cache, limit), result.cache


def page_query(app: App, agent_id: str | None = None, tags: tuple[str, ...] = (),
               match: Literal["any", "all"] = "any", min_importance: float | None = None,
               since: datetime | None = None, until: datetime | None = None, text: str | None = None,
               memory_type: str | None = None, session_id: str | None = None,
               order: Literal["recent", "importance"] = "recent", limit: int = 20,
               cursor: str | None = None) -> MemoryQuery:
    """The read model query of a page: one row more than the page, to know whether another follows."""
    from projections import MemoryQuery

    after = h.decode_cursor(cursor) if cursor else None
    return MemoryQuery(app.tenant or "", agent_id, tuple(t.lower() for t in tags), match, min_importance,
                       since, until, text, memory_type, session_id, order, limit + 1, after)


def page_body(query: MemoryQuery, rows: list[Row], cache: str, limit: int, more_pages: bool = True) -> bytes:
    """A page's JSON (a `MemoryPage`), encoded straight from the read model's rows with the fields and
    formats pydantic would give, without a validation pass per row."""
    page = rows[:limit]
    more = more_pages and len(rows) > limit
    next_cursor = h.encode_cursor(query.page_key(page[-1])) if more else None
    items = [{name: row[name] for name in _ITEM_FIELDS} for row in page]
    return orjson.dumps({"items": items, "next_cursor": next_cursor, "cache": cache}, option=orjson.OPT_UTC_Z)


#: The fields of each memory of a page, in the order of its schema (`MemoryOut`).
_ITEM_FIELDS = tuple(MemoryOut.model_fields)


@router.get("/memories/{memory_id}", response_model=MemoryOut)
def get_memory(memory_id: IdPath, response: Response, app: AppDep, agent_id: Agent = None,
               as_of: Annotated[datetime | None, Query(description="As it stood at this time.")] = None,
               consistent_with: Token = None) -> MemoryOut:
    """One live memory (404 when unknown, forgotten or expired); `ETag` is its version."""
    _wait(app, consistent_with)
    row = app.get(None, memory_id, agent_id, as_of)
    response.headers["ETag"] = h.etag(int(row["version"]))
    return MemoryOut(**row)


@router.get("/memories/{memory_id}/history", response_model=HistoryOut)
def memory_history(memory_id: IdPath, app: AppDep, agent_id: Agent = None,
                   consistent_with: Token = None) -> HistoryOut:
    """Every event of one memory, oldest first, each with its ledger position and the key that wrote it."""
    from projections import NotFound

    _wait(app, consistent_with, "archive")
    entries = app.history(None, memory_id, agent_id)
    if not entries:
        raise NotFound(f"no memory {memory_id!r} in this org")
    return HistoryOut(memory_id=memory_id, events=[
        HistoryEntryOut(partition=e.partition, stream_id=e.stream_id, event=e.event.model_dump(mode="json"))
        for e in entries])


@router.get("/sessions/{session_id}", response_model=SessionOut)
def get_session(session_id: IdPath, app: AppDep, agent_id: Agent = None, consistent_with: Token = None) -> SessionOut:
    """One session: status, summary, the memories extracted from it, its transcript."""
    _wait(app, consistent_with)
    tree = app.session(None, session_id, agent_id)
    return SessionOut(session=tree.session, summary=tree.summary, discrete=tree.discrete)


@router.get("/hierarchy", response_model=HierarchyOut)
def hierarchy(app: AppDep, agent_id: Agent = None,
              session_id: Annotated[str | None, Query(max_length=128)] = None,
              level: Annotated[list[Literal["raw", "summary", "discrete"]] | None, Query(
                  description="raw | summary | discrete (repeatable; default all).")] = None,
              since: Since = None, until: Until = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              consistent_with: Token = None) -> HierarchyOut:
    """Sessions (raw), their summaries and the discrete memories under them, newest first."""
    from projections.hierarchy import LEVELS, HierarchyQuery

    _wait(app, consistent_with)
    levels = tuple(x for x in LEVELS if x in (level or LEVELS))
    query = HierarchyQuery(app.tenant or "", levels, session_id, agent_id, _utc(since), _utc(until), limit)
    return HierarchyOut(rows=app.hierarchy(query))


@router.get("/stats", response_model=StatsOut)
def stats(app: AppDep, consistent_with: Token = None,
          top_tags: Annotated[int, Query(ge=1, le=1000, description="How many tags, most used first")] = 100,
          ) -> StatsOut:
    """The key's org (or agent) in numbers: per agent (live memories, stored, updated, forgotten,
    expired, recalls, sessions), per tag (live memories), and the hierarchy (sessions by status,
    summaries, extracted and direct memories)."""
    _wait(app, consistent_with)
    report = app.stats_report(None, top_tags)
    return StatsOut(agents=report.agents, tags=report.tags, hierarchy=HierarchyCounts(**report.hierarchy))


@router.get("/trending", response_model=TrendingOut)
def trending(app: AppDep, hours: Annotated[int, Query(ge=1, le=720)] = 24,
             top: Annotated[int, Query(ge=1, le=100)] = 10, until: Until = None,
             consistent_with: Token = None) -> TrendingOut:
    """Trending tags and most-recalled memories over the `hours` before `until` (now)."""
    _wait(app, consistent_with, "trending")
    report = app.trending(None, hours, top, _utc(until))
    body = report.as_json()
    return TrendingOut(hours=report.hours, until=report.until, tags=body["tags"], memories=body["memories"])


@router.get("/analytics", response_model=AnalyticsOut)
def analytics(app: AppDep, since: Annotated[date | None, Query(description="First day (default: 6 days ago).")] = None,
              until: Annotated[date | None, Query(description="Last day (default: today, UTC).")] = None,
              consistent_with: Token = None) -> AnalyticsOut:
    """Events per type, unique agents and users, per day."""
    _wait(app, consistent_with, "analytics")
    report = app.analytics(None, since, until)
    return AnalyticsOut.model_validate(report.as_json())


@router.get("/agents/{agent_id}/feed", response_model=FeedOut)
def feed(agent_id: IdPath, app: AppDep, limit: Annotated[int, Query(ge=1, le=1000)] = 20,
         consistent_with: Token = None) -> FeedOut:
    """An agent's recent activity, newest first."""
    _wait(app, consistent_with, "activity")
    return FeedOut(agent_id=agent_id, items=app.feed(None, agent_id, limit))


def _utc(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)

