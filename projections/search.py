"""Semantic, text and hybrid search: the query, its checks, its filters' SQL and the fusion.

Pure (no connection): `projections/postgres/search_reads.py` runs the SQL, `memledger/search.py`
embeds the query text in the read model's vector space and calls it.

Modes. `semantic` ranks by cosine distance to the query's embedding (HNSW), `text` by
PostgreSQL full-text rank over the same rows (any query word may match: the words are OR-ed,
so a question phrased in full still finds a memory that shares two of its words), `hybrid`
(the default) fuses the vector ranking with the memories holding every query word by reciprocal rank fusion: score = sum over the rankings a
memory appears in of 1 / (RRF_K + rank). Every filter is a WHERE clause of both rankings'
SQL, so a filter never empties a top-k that was cut before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ledger.errors import InvalidQuery

from .query import MAX_TEXT, _check_importance, _check_number, _check_tags, check_text, check_time

__all__ = ["MODES", "RRF_K", "Ranked", "SearchHit", "SearchQuery", "fuse"]

Mode = Literal["hybrid", "semantic", "text"]
MODES: tuple[str, ...] = ("hybrid", "semantic", "text")
#: Reciprocal rank fusion's constant (Cormack et al. 2009): damps the weight of the very top ranks.
RRF_K = 60
#: Most hits one search answers.
MAX_LIMIT = 100
#: Candidates each ranking contributes to the fusion, per hit asked for (at least MIN_DEPTH).
DEPTH_PER_HIT, MIN_DEPTH = 4, 40


@dataclass(frozen=True)
class SearchQuery:
    """`memledger search`: a text, a mode, and filters; `org_id` is required."""

    org_id: str
    text: str
    mode: Mode = "hybrid"
    agent_id: str | None = None
    tags: tuple[str, ...] = ()  # every tag given must be on the memory
    since: datetime | None = None  # updated at or after
    until: datetime | None = None  # updated before
    min_importance: float | None = None
    limit: int = 10

    def __post_init__(self) -> None:
        check_text("org_id", self.org_id)
        if not self.org_id:
            raise InvalidQuery("org_id is empty; every search names its org")
        check_text("text", self.text)
        if not self.text.strip():
            raise InvalidQuery("text is empty; say what to search for")
        if len(self.text) > MAX_TEXT:
            raise InvalidQuery(f"text is {len(self.text)} characters long; a search takes at most {MAX_TEXT}")
        if self.mode not in MODES:
            raise InvalidQuery(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.agent_id is not None:
            check_text("agent_id", self.agent_id)
        _check_importance(self.min_importance)
        _check_number("limit", self.limit, 1, MAX_LIMIT)
        object.__setattr__(self, "tags", _check_tags(self.tags))
        for name in ("since", "until"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_time(name, getattr(self, name)))

    @property
    def depth(self) -> int:
        """How many candidates each ranking returns."""
        return max(MIN_DEPTH, DEPTH_PER_HIT * self.limit)

    def where(self, now: datetime) -> tuple[str, list[Any]]:
        """The filters as one WHERE clause (org always; live memories only) and its arguments."""
        where, args = ["org_id = %s", "(expires_at IS NULL OR expires_at > %s)"], [self.org_id, now]
        optional: list[tuple[bool, str, Any]] = [
            (self.agent_id is not None, "agent_id = %s", self.agent_id),
            (bool(self.tags), "tags @> %s", list(self.tags)),
            (self.min_importance is not None, "importance >= %s", self.min_importance),
            (self.since is not None, "updated_at >= %s", self.since),
            (self.until is not None, "updated_at < %s", self.until),
        ]
        for active, clause, value in optional:
            if active:
                where.append(clause)
                args.append(value)
        return " AND ".join(where), args


@dataclass(frozen=True)
class Ranked:
    """One row of one ranking (rank 1 is the best)."""

    key: tuple[str, str]  # agent_id, memory_id
    rank: int
    value: float  # cosine similarity (vector) or ts_rank_cd (text)
    row: dict[str, Any]


@dataclass(frozen=True)
class SearchHit:
    """A memory found, its score, and which signals matched it (None: not in that ranking)."""

    memory: dict[str, Any]
    score: float
    vector_rank: int | None
    text_rank: int | None
    similarity: float | None  # cosine similarity to the query's embedding, when in the vector ranking

    def as_dict(self) -> dict[str, Any]:
        return {**self.memory, "score": self.score, "vector_rank": self.vector_rank,
                "text_rank": self.text_rank, "similarity": self.similarity}


def fuse(mode: str, vector: Sequence[Ranked], text: Sequence[Ranked], limit: int) -> list[SearchHit]:
    """The hits of `mode` from the two rankings: semantic and text keep their own order and
    score; hybrid scores by reciprocal rank fusion (ties: better vector rank, then id)."""
    by_vector, by_text = {r.key: r for r in vector}, {r.key: r for r in text}
    keys = list(by_vector) if mode == "semantic" else list(by_text) if mode == "text" else [
        *by_vector, *(k for k in by_text if k not in by_vector)]
    hits = [_hit(mode, by_vector.get(k), by_text.get(k)) for k in keys]
    hits.sort(key=lambda h: (-h.score, h.vector_rank or 1 << 30, h.memory["agent_id"], h.memory["memory_id"]))
    return hits[:limit]


def _hit(mode: str, v: Ranked | None, t: Ranked | None) -> SearchHit:
    row = (v or t).row if (v or t) is not None else {}  # type: ignore[union-attr]
    if mode == "semantic":
        score = v.value if v else 0.0
    elif mode == "text":
        score = t.value if t else 0.0
    else:
        score = sum(1.0 / (RRF_K + r.rank) for r in (v, t) if r is not None)
    return SearchHit(row, round(score, 6), v.rank if v else None, t.rank if t else None,
                     round(v.value, 6) if v else None)
