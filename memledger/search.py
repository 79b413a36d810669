"""What `App.search` does: embed the query in the live read model's vector space, rank, fuse.

The query is embedded with the model the *stored* read model was built with (its
`embedding_space`), not the configured one: while `memledger replay rebuild embeddings`
re-embeds into a shadow for a new model, searches keep answering from the old tables with
the old model, and after the swap with the new ones. Embedders are kept per space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger import Settings

if TYPE_CHECKING:
    from projections.embedders import Embedder
    from projections.postgres.search_reads import SearchStore
    from projections.search import SearchHit, SearchQuery

__all__ = ["Searcher"]


class Searcher:
    """Search over one namespace's embeddings read model (opened on first use)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._store: SearchStore | None = None
        self._embedders: dict[str, Embedder] = {}

    def _open(self) -> SearchStore:
        if self._store is None:
            from projections.postgres.search_reads import SearchStore

            self._store = SearchStore(self.settings)
        return self._store

    def available(self) -> str | None:
        """None when semantic search can answer here, else the one line that says why not."""
        from ledger.errors import SemanticSearchUnavailable

        try:
            self._open().space()
        except SemanticSearchUnavailable as e:
            return str(e)
        return None

    def search(self, query: SearchQuery) -> list[SearchHit]:
        from projections.postgres.embeddings import vector_text
        from projections.search import fuse

        store = self._open()
        space = store.space()
        vector, dimension = None, 0
        if query.mode != "text" and space is not None:
            vector, dimension = vector_text(self._embedder(space[0]).embed([query.text])[0]), space[1]
        by_vector, by_text = store.rankings(query, vector, dimension)
        return fuse(query.mode, by_vector, by_text, query.limit)

    def _embedder(self, space: str) -> Embedder:
        if space not in self._embedders:
            from projections.embedders import embedder_for

            self._embedders[space] = embedder_for(self.settings, space)
        return self._embedders[space]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        for embedder in self._embedders.values():
            embedder.close()
        self._embedders.clear()
