"""An OpenAI-compatible embeddings endpoint (`POST {url}/embeddings`), as production
deployments use: OpenAI, vLLM, Ollama, text-embeddings-inference, LiteLLM all answer it.

Configured by MEMLEDGER_EMBEDDINGS_URL (the base URL, e.g. http://127.0.0.1:8000/v1),
MEMLEDGER_EMBEDDINGS_MODEL and MEMLEDGER_EMBEDDINGS_API_KEY (sent as a bearer token). An
endpoint that cannot be reached, or answers 5xx or 429, is `EmbeddingsUnavailable` (transient:
a projector waits it out); any other refusal is a `ConfigurationError` naming the status.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import httpx

from ledger.errors import ConfigurationError, EmbeddingsUnavailable

__all__ = ["EndpointEmbedder"]

#: Seconds to wait for one batch.
TIMEOUT_S = 60.0


class EndpointEmbedder:
    """Vectors of `model` from the endpoint at `url` (the dimension is learnt from the first answer)."""

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout_s: float = TIMEOUT_S):
        self.url, self.model, self.space = url.rstrip("/") + "/embeddings", model, "endpoint:" + model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)
        self._dimension: int | None = None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self.embed(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        body = self._post({"model": self.model, "input": list(texts), "encoding_format": "float"})
        data = sorted(body.get("data") or [], key=lambda d: int(d.get("index", 0)))
        if len(data) != len(texts):
            raise ConfigurationError(f"{self.url} answered {len(data)} embeddings for {len(texts)} texts")
        vectors = [_unit([float(x) for x in d["embedding"]]) for d in data]
        self._check_dimension({len(v) for v in vectors})
        return vectors

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self._client.post(self.url, json=payload)
        except httpx.HTTPError as e:
            raise EmbeddingsUnavailable(f"the embeddings endpoint {self.url} is unreachable: {e}") from e
        if answer.status_code >= 500 or answer.status_code == 429:
            raise EmbeddingsUnavailable(f"the embeddings endpoint {self.url} answered {answer.status_code}")
        if answer.status_code != 200:
            raise ConfigurationError(f"the embeddings endpoint {self.url} refused model {self.model!r}: "
                                     f"{answer.status_code} {answer.text[:200]}")
        body: dict[str, Any] = answer.json()
        return body

    def _check_dimension(self, sizes: set[int]) -> None:
        if len(sizes) != 1 or (self._dimension is not None and sizes != {self._dimension}):
            raise ConfigurationError(f"{self.url} answered vectors of {sorted(sizes)} dimensions for model "
                                     f"{self.model!r} (expected {self._dimension})")
        self._dimension = sizes.pop()

    def close(self) -> None:
        self._client.close()


def _unit(vector: list[float]) -> list[float]:
    """Cosine search wants unit vectors; OpenAI's are, not every server's."""
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
