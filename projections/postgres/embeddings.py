"""The embeddings read model: each live memory's text, filters, tsvector and embedding
(pgvector), in tables of its own (`memory_search`, `embedding_space`), folded by a projector
of its own (its own checkpoint and lag: a slow model never delays the memories read model).

Version. Its projection version is the schema version (`version`) plus the vector space
(`embedding_space`: model and dimension). A projector configured for another model refuses
the stored read model and names `memledger replay rebuild embeddings`, which re-embeds into
a shadow schema and swaps it in (`PostgresShadow`) while searches keep reading the old tables
(and embed their queries with the old model: `memledger/search.py` reads `embedding_space`).

Cache. `embedding_cache` in the *live* schema (a shadow's own copy stays empty) maps
(space, sha256 of the content) to the vector: identical content is embedded once, a rebuild
for the same model calls the model for nothing it has seen, and a replay reproduces the
vectors bit for bit (verify compares them). The batch's texts that miss the cache go to the
model in batches of `MEMLEDGER_EMBEDDING_BATCH`; their vectors enter the cache in the same
transaction as the rows and the checkpoint.

The HNSW index (cosine) is on `embedding::public.vector(N)`: the column has no dimension of
its own, so one migration serves every model; it is created when a projector claims an empty
read model for its space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

import psycopg

from ledger.errors import OutdatedReadModel, SemanticSearchUnavailable
from ledger.events import Event, RecordedEvent
from ledger.postgres import translated
from ledger.settings import Settings

from ..embedders import Embedder, configured_space, open_embedder
from ..fold import MEMORY_EVENTS, MemoryRow, fold_memory
from .base import PostgresProjection
from .digest import quote

__all__ = ["EmbeddingsProjection", "SearchRow", "hnsw_index_sql", "unavailable_message", "vector_text"]

Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class SearchRow:
    """A memory as search needs it (the columns of `memory_search` but the vector)."""

    org_id: str
    agent_id: str
    memory_id: str
    content: str
    tags: tuple[str, ...]
    importance: float
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


COLUMNS = [f.name for f in fields(SearchRow)]


def unavailable_message(where: str) -> str:
    return (f"semantic search is unavailable: {where} has no pgvector extension (`vector`); "
            "`memledger query memories --text` still searches words")


#: HNSW build parameters. pgvector's defaults (16, 64) measured recall@10 0.79 against an exact
#: scan over 100k bench sentences at ef_search 100 and 0.91 at 400; (32, 200) 0.955 at 400 for a
#: 68 s build instead of 13 (`memledger bench search`, README "Search figures").
HNSW_M, HNSW_EF_CONSTRUCTION = 32, 200


def hnsw_index_sql(dimension: int, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> str:
    return (f"CREATE INDEX IF NOT EXISTS memory_search_embedding ON memory_search USING hnsw "
            f"((embedding::public.vector({int(dimension)})) public.vector_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})")


def vector_text(vector: Sequence[float]) -> str:
    """pgvector's text form; repr keeps every bit of a float32."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _fold(row: SearchRow | None, e: Event) -> SearchRow | None:
    """`fold_memory` on the columns search keeps (the others do not influence them)."""
    memory = None if row is None else MemoryRow(row.org_id, row.agent_id, row.memory_id, row.content, "",
                                                row.tags, row.importance, {}, None, row.created_at,
                                                row.updated_at, row.expires_at, 0)
    after = fold_memory(memory, e)
    if after is None:
        return None
    return SearchRow(after.org_id, after.agent_id, after.memory_id, after.content, tuple(after.tags),
                     after.importance, after.created_at, after.updated_at, after.expires_at)


def content_hash(content: str) -> bytes:
    return hashlib.sha256(content.encode("utf-8")).digest()


class EmbeddingsProjection(PostgresProjection):
    name = "embeddings"
    version = 1
    tables = ("memory_search", "embedding_space")
    durable_commit = False  # derived data, re-applied from the ledger after a database crash

    def __init__(self, conninfo: str, schema: str, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.cache_schema = self.settings.db_schema  # the live schema's cache, also for a shadow
        self._embedder: Embedder | None = None
        self.embedded = 0  # texts sent to the model by this process (the cache's misses)
        super().__init__(conninfo, schema)

    @classmethod
    def open(cls, settings: Settings, target: str | None = None) -> Self:
        from ledger.connections import database_url

        return cls(database_url(settings), target or settings.db_schema, settings)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = open_embedder(self.settings)
        return self._embedder

    def close(self) -> None:
        super().close()
        if self._embedder is not None:
            self._embedder.close()

    # -- version: schema version + vector space ------------------------------------------------

    def stored_space(self) -> tuple[str, int] | None:
        with translated(), self.conn.transaction():
            self._require_tables()
            row = self.conn.execute("SELECT space, dimension FROM embedding_space").fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def ensure_current(self) -> None:
        """Refuse a read model of another schema version or vector space; claim an empty one."""
        stored = self.stored_space()
        super().ensure_current()
        space = configured_space(self.settings)
        if stored is None:
            self._claim(space)
            return
        if stored[0] != space or stored[1] != self.embedder.dimension:
            raise OutdatedReadModel(
                f"the {self.name!r} read model holds vectors of {stored[0]} ({stored[1]} dimensions), the "
                f"configured model is {space} ({self.embedder.dimension}); rebuild it with `memledger replay "
                f"rebuild {self.name}` (searches answer from the current one meanwhile)")

    def _claim(self, space: str) -> None:
        if self.checkpoints():
            raise OutdatedReadModel(f"the {self.name!r} read model has checkpoints but no vector space; rebuild "
                                    f"it with `memledger replay rebuild {self.name}`")
        dimension = self.embedder.dimension
        with translated(), self.conn.transaction():
            self.conn.execute("INSERT INTO embedding_space (space, dimension) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                              (space, dimension))
            self.conn.execute(hnsw_index_sql(dimension))

    def _require_tables(self) -> None:
        if self.conn.execute("SELECT to_regclass('memory_search')").fetchone() in (None, (None,)):
            raise SemanticSearchUnavailable(unavailable_message(f"schema {self.schema!r}"))

    # -- applying ------------------------------------------------------------------------------

    def write(self, cur: psycopg.Cursor, events: Sequence[RecordedEvent]) -> None:
        memory = [r.event for r in events if r.event.type in MEMORY_EVENTS]
        if not memory:
            return None
        before = self._load(cur, _needs_loading(memory))
        after: dict[Key, SearchRow | None] = dict(before)
        for e in memory:
            key = (e.org_id, e.agent_id, e.subject_id)
            after[key] = _fold(after.get(key), e)
        changed = {k: v for k, v in after.items() if v != before.get(k)}
        self._delete(cur, [k for k, v in changed.items() if v is None and k in before])
        rows = [v for v in changed.values() if v is not None]
        if rows:
            self._upsert(cur, rows, self._vectors(cur, {r.content for r in rows}))
        return None

    def _load(self, cur: psycopg.Cursor, keys: set[Key]) -> dict[Key, SearchRow | None]:
        if not keys:
            return {}
        orgs, agents, ids = (list(x) for x in zip(*keys))
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM memory_search WHERE (org_id, agent_id, memory_id) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))", (orgs, agents, ids))
        out: dict[Key, SearchRow | None] = {}
        for values in cur.fetchall():
            named = dict(zip(COLUMNS, values))
            row = SearchRow(**{**named, "tags": tuple(named["tags"] or ())})
            out[(row.org_id, row.agent_id, row.memory_id)] = row
        return out

    def _vectors(self, cur: psycopg.Cursor, contents: set[str]) -> dict[bytes, str]:
        """content hash -> vector text, from the cache, embedding (and caching) the misses."""
        space, cache = configured_space(self.settings), quote(self.cache_schema, "embedding_cache")
        hashes = {content_hash(c): c for c in contents}
        cur.execute(f"SELECT content_hash, embedding::text FROM {cache} WHERE space = %s AND content_hash = ANY(%s)",
                    (space, list(hashes)))
        found: dict[bytes, str] = {bytes(h): str(v) for h, v in cur.fetchall()}
        missing = [h for h in hashes if h not in found]
        batch = self.settings.embedding_batch
        for i in range(0, len(missing), batch):
            chunk = missing[i:i + batch]
            vectors = [vector_text(v) for v in self.embedder.embed([hashes[h] for h in chunk])]
            self.embedded += len(chunk)
            found.update(zip(chunk, vectors))
            cur.executemany(f"INSERT INTO {cache} (space, content_hash, embedding) VALUES (%s, %s, %s::public.vector)"
                            " ON CONFLICT DO NOTHING", [(space, h, v) for h, v in zip(chunk, vectors)])
        return found

    def _upsert(self, cur: psycopg.Cursor, rows: list[SearchRow], vectors: dict[bytes, str]) -> None:
        columns = [*COLUMNS, "content_hash", "embedding"]
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("org_id", "agent_id", "memory_id"))
        values = [(*(_sql_value(getattr(r, c)) for c in COLUMNS), h, vectors[h])
                  for r in rows for h in (content_hash(r.content),)]
        cur.executemany(
            f"INSERT INTO memory_search ({', '.join(columns)}) VALUES ({', '.join(['%s'] * (len(columns) - 1))},"
            f" %s::public.vector) ON CONFLICT (org_id, agent_id, memory_id) DO UPDATE SET {updates}", values)

    def _delete(self, cur: psycopg.Cursor, keys: list[Key]) -> None:
        if keys:
            orgs, agents, ids = (list(x) for x in zip(*keys))
            cur.execute("DELETE FROM memory_search WHERE (org_id, agent_id, memory_id) IN "
                        "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))", (orgs, agents, ids))


def _sql_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _needs_loading(events: list[Event]) -> set[Key]:
    """Subjects whose stored row must be read: all but those first stored in this batch."""
    first: dict[Key, str] = {}
    for e in events:
        first.setdefault((e.org_id, e.agent_id, e.subject_id), e.type)
    return {k for k, t in first.items() if t != "MemoryStored"}


