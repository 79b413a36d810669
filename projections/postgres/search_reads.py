"""The SQL of search (`projections.search`): the vector and the text ranking of
`memory_search`, each with every filter in its WHERE clause.

Vector ranking. `ORDER BY embedding::vector(N) <=> q LIMIT depth` is what the HNSW index
answers (ef_search = max(EF_SEARCH, depth)). HNSW filters while it walks its candidate list (pgvector 0.6
has no iterative scan), so under a selective filter it can come back with fewer than `depth`
rows although more match: then the same ranking is asked again as an exact scan (ordering
by an expression the index does not answer), which the filters make small. A filter never
leaves a short result that the data could have filled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


from ledger.errors import SemanticSearchUnavailable
from ledger.connections import read_database_url
from ledger.postgres import connect, translated
from ledger.settings import Settings

from ..search import Ranked, SearchQuery
from .embeddings import unavailable_message

__all__ = ["SearchStore"]

#: HNSW candidate list size. Over 100k bench sentences (index m 32, ef_construction 200) recall@10
#: against an exact scan was 0.81 at 40 (pgvector's default), 0.87 at 100, 0.955 at 400, for a
#: vector query of 2.7, 4.0 and 11.4 ms p50 (README "Search figures").
EF_SEARCH = 400
_COLUMNS = "org_id, agent_id, memory_id, content, tags, importance, created_at, updated_at, expires_at"
_NAMES = [c.strip() for c in _COLUMNS.split(",")]
# Text mode: any word of the query may match (a question rarely holds every word of a memory).
# Hybrid: every word must match. Measured on the retrieval set (README "Search"), OR-ed words
# match many memories loosely and outvote the vector ranking in the fusion (hybrid recall@1
# 0.77 against semantic 0.98); a memory holding every word is strong evidence instead.
_TSQUERY = {True: "replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')::tsquery",
            False: "plainto_tsquery('english', %s)"}


class SearchStore:
    """Reads `memory_search` of one namespace (a connection of its own)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # a replica, if set; planned per query (ledger.postgres.QUERY_PLANNING)
        self.conn = connect(read_database_url(settings), settings.db_schema, autocommit=True, queries=True)

    def close(self) -> None:
        self.conn.close()

    def space(self) -> tuple[str, int] | None:
        """The vector space of the live read model (None: not claimed yet); raises
        SemanticSearchUnavailable where the database has no pgvector."""
        with translated():
            if self.conn.execute("SELECT to_regclass('memory_search')").fetchone() in (None, (None,)):
                raise SemanticSearchUnavailable(unavailable_message(self._where()))
            row = self.conn.execute("SELECT space, dimension FROM embedding_space").fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def _where(self) -> str:
        info = self.conn.info
        return f"PostgreSQL {info.host}:{info.port}/{info.dbname}"

    def rankings(self, query: SearchQuery, vector: str | None, dimension: int, now: datetime | None = None,
                 ef_search: int = EF_SEARCH) -> tuple[list[Ranked], list[Ranked]]:
        """The vector ranking (when `vector` is given) and the text ranking (unless semantic)."""
        now = now or datetime.now(UTC)
        with translated(), self.conn.transaction():
            by_vector = self._vector(query, vector, dimension, now, ef_search) if vector is not None else []
            by_text = self._text(query, now) if query.mode != "semantic" else []
        return by_vector, by_text

    def _vector(self, query: SearchQuery, vector: str, dimension: int, now: datetime, ef_search: int) -> list[Ranked]:
        where, args = query.where(now)
        distance = f"(embedding::public.vector({dimension})) OPERATOR(public.<=>) %s::public.vector({dimension})"
        self.conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), min(query.depth, 1000))}")
        sql = (f"SELECT {_COLUMNS}, {distance} AS distance FROM memory_search WHERE {where} "
               f"ORDER BY {distance} LIMIT %s")
        rows = self.conn.execute(sql, [vector, *args, vector, query.depth]).fetchall()
        if len(rows) < query.depth:  # HNSW may have filtered its candidates short: ask exactly
            exact = sql.replace(f"ORDER BY {distance}", f"ORDER BY ({distance}) + 0")
            rows = self.conn.execute(exact, [vector, *args, vector, query.depth]).fetchall()
        return [_ranked(i, row, 1.0 - float(row[-1])) for i, row in enumerate(rows, 1)]

    def _text(self, query: SearchQuery, now: datetime) -> list[Ranked]:
        where, args = query.where(now)
        words = _TSQUERY[query.mode == "text"]
        sql = (f"WITH words AS (SELECT {words} AS q) SELECT {_COLUMNS}, ts_rank_cd(search, q) AS rank "
               f"FROM memory_search, words WHERE {where} AND search @@ q "
               "ORDER BY rank DESC, updated_at DESC, memory_id LIMIT %s")
        rows = self.conn.execute(sql, [query.text, *args, query.depth]).fetchall()
        return [_ranked(i, row, float(row[-1])) for i, row in enumerate(rows, 1)]


def _ranked(rank: int, values: Any, value: float) -> Ranked:
    row: dict[str, Any] = dict(zip(_NAMES, values))
    row["tags"] = list(row["tags"] or ())
    return Ranked((row["agent_id"], row["memory_id"]), rank, value, row)


