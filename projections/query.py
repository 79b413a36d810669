"""The analysts' query API over the PostgreSQL read models. Every query is scoped to one org.

Expiry: a memory past its `expires_at` is gone for every query from that instant, though
its row stays in the read model until the expiry job's `MemoryExpired` event is projected
(the projection reads no clock, so a replay reproduces it). So the query filters, by the
store's clock (the UTC wall clock unless one is passed in, like the expiry job's), or by
the instant a point-in-time query (`as_of`) asks about. Agent statistics count a memory
past its expiry as expired, not live.

Input: a `MemoryQuery` checks its filters when it is built, and the store checks the ids
it is given; what PostgreSQL cannot take (NUL, a lone surrogate, a limit out of range, a
filter of the wrong type, a text search too large to plan) is an `InvalidQuery` naming the
field. A driver error that still gets through is translated where every PostgreSQL error is,
`ledger.postgres.query_errors`.

This module is pure (the queries, their checks and their SQL text); the store that runs them
on PostgreSQL is `projections.postgres.memory_store.MemoryStore`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ledger.errors import InvalidQuery, NotFound
from ledger.storable import text_problem

Row = dict[str, Any]
Clock = Callable[[], datetime]
COLUMNS = ("org_id, agent_id, memory_id, content, memory_type, tags, importance, metadata, session_id,"
           " created_at, updated_at, expires_at, version, recall_count, last_recalled_at")
#: The condition a row meets while it is not past its expiry; its one argument is the reference time.
LIVE = "(expires_at IS NULL OR expires_at > %s)"
#: Most rows one query returns.
MAX_LIMIT = 10_000
#: Longest full-text search, in characters; PostgreSQL cannot plan ones many times longer.
MAX_TEXT = 4_096
#: The string filters of a MemoryQuery (a new one goes here, so that it is checked too).
TEXT_FILTERS = ("agent_id", "text", "memory_type", "session_id")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- input checks: refuse, naming the field, what PostgreSQL cannot take ---------------------


def check_text(name: str, value: object) -> None:
    """A string PostgreSQL text can hold: no NUL, encodable as UTF-8 (no lone surrogate)."""
    if not isinstance(value, str):
        raise InvalidQuery(f"{name} must be a string, not {type(value).__name__}")
    if (problem := text_problem(value)) is not None:
        raise InvalidQuery(f"{name}: {problem}")


def check_time(name: str, value: object) -> datetime:
    """A datetime; a naive one is taken as UTC, as every time in the ledger is."""
    if not isinstance(value, datetime):
        raise InvalidQuery(f"{name} must be a datetime, not {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidQuery(f"{name} is {value!r}; use one of: {', '.join(choices)}")


def _check_number(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidQuery(f"{name} must be a whole number from {low} to {high}, not {value!r}")


def _check_tags(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise InvalidQuery(f"tags must be a sequence of tags, not {type(value).__name__} {value!r}")
    for i, tag in enumerate(value):
        check_text(f"tags[{i}]", tag)
    return tuple(value)


def check_ids(**ids: str | None) -> None:
    """Each id given (None: not given) is a string PostgreSQL text can hold."""
    for name, value in ids.items():
        if value is not None:
            check_text(name, value)


def _check_importance(value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
        raise InvalidQuery(f"min_importance must be a number from 0 to 1, not {value!r}")


@dataclass(frozen=True)
class MemoryQuery:
    """Filters of `query memories`; `org_id` is required, the rest narrow the result.

    Checked when built (`InvalidQuery` names the field); `tags` becomes a tuple and naive
    `since`/`until` are taken as UTC, so equal filters are equal queries (and cache alike).
    """

    org_id: str
    agent_id: str | None = None
    tags: tuple[str, ...] = ()
    match: Literal["any", "all"] = "any"
    min_importance: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    memory_type: str | None = None
    session_id: str | None = None
    order: Literal["recent", "importance"] = "recent"
    limit: int = 20
    #: Keyset pagination: the sort key of the last row of the previous page (`page_key(row)`);
    #: the query then answers the rows after it in this order. None: the first page.
    after: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        check_text("org_id", self.org_id)
        if not self.org_id:
            raise InvalidQuery("org_id is empty; every query names its org")
        for name in TEXT_FILTERS:
            if getattr(self, name) is not None:
                check_text(name, getattr(self, name))
        if self.text is not None and len(self.text) > MAX_TEXT:
            raise InvalidQuery(f"text is {len(self.text)} characters long; a text search takes at most {MAX_TEXT}")
        _check_choice("match", self.match, ("any", "all"))
        _check_choice("order", self.order, ("recent", "importance"))
        _check_importance(self.min_importance)
        _check_number("limit", self.limit, 1, MAX_LIMIT)
        object.__setattr__(self, "tags", _check_tags(self.tags))  # frozen: normalised in place, once
        for name in ("since", "until"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_time(name, getattr(self, name)))
        if self.after is not None:
            object.__setattr__(self, "after", _check_after(self.after, self.order))

    def page_key(self, row: Row) -> tuple[Any, ...]:
        """The `after` that continues this query past `row` (one of its result rows)."""
        key = (row["updated_at"], row["memory_id"], row["agent_id"])
        return (row["importance"], *key) if self.order == "importance" else key

    def sql(self, now: datetime) -> tuple[str, list[Any]]:
        """The SELECT for these filters, of memories not past their expiry at `now` (pure: no connection)."""
        where: list[str] = ["org_id = %s", LIVE]
        args: list[Any] = [self.org_id, now]
        optional: list[tuple[bool, str, Any]] = [
            # COLLATE "C": what the per-agent indexes are built on (migration 0007), so that
            # they serve these queries and never the projector's look-ups by key.
            (self.agent_id is not None, 'agent_id COLLATE "C" = %s', self.agent_id),
            (bool(self.tags), "tags && %s" if self.match == "any" else "tags @> %s", list(self.tags)),
            (self.min_importance is not None, "importance >= %s", self.min_importance),
            (self.since is not None, "updated_at >= %s", self.since),
            (self.until is not None, "updated_at < %s", self.until),
            (bool(self.text), "search @@ websearch_to_tsquery('english', %s)", self.text),
            (self.memory_type is not None, "memory_type = %s", self.memory_type),
            (self.session_id is not None, "session_id = %s", self.session_id),
        ]
        for active, clause, value in optional:
            if active:
                where.append(clause)
                args.append(value)
        if self.after is not None:
            clause, values = _after_clause(self.after)
            where.append(clause)
            args += values
        # agent_id last: memory ids are unique per agent, so the order is total and pages never overlap.
        order = "updated_at DESC, memory_id, agent_id"
        if self.order == "importance":
            order = "importance DESC, " + order
        args.append(self.limit)
        return f"SELECT {COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s", args


def _check_after(after: object, order: str) -> tuple[Any, ...]:
    """A page key of the right shape for `order`: ([importance,] updated_at, memory_id, agent_id)."""
    size = 4 if order == "importance" else 3
    if not isinstance(after, (tuple, list)) or len(after) != size:
        raise InvalidQuery(f"after must hold {size} values for order {order!r}; pass the key of the last row")
    values = tuple(after)
    if size == 4:
        _check_importance(values[0])
    check_text("after memory_id", values[-2])
    check_text("after agent_id", values[-1])
    return (*values[:-3], check_time("after updated_at", values[-3]), values[-2], values[-1])


def _after_clause(after: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """Rows strictly after `after` in the query's order (updated_at descending, then ids ascending)."""
    updated, memory, agent = after[-3:]
    clause = "(updated_at < %s OR (updated_at = %s AND (memory_id, agent_id) > (%s, %s)))"
    args: list[Any] = [updated, updated, memory, agent]
    if len(after) == 4:
        # importance is REAL: compare as REAL, or the key's double would not equal its own row.
        clause = f"(importance < %s::real OR (importance = %s::real AND {clause}))"
        args = [after[0], after[0], *args]
    return clause, args


@dataclass
class QueryResult:
    rows: list[Row]
    cache: str = "BYPASS"  # HIT | MISS once the Redis query cache fronts this (see projections.cache)
    meta: dict[str, Any] = field(default_factory=dict)


__all__: Sequence[str] = ["COLUMNS", "LIVE", "MAX_LIMIT", "MAX_TEXT", "Clock", "MemoryQuery", "NotFound", "QueryResult",
                          "Row", "check_ids", "check_text", "check_time", "utc_now"]
