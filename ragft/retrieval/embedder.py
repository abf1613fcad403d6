"""Sentence-transformers embedder with normalised float32 output."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from functools import cache
from typing import Any

from ragft.models import model_id, resolve, resolve_device


class Embedder:
    """Embeds texts into unit vectors (inner product = cosine similarity).

    `dtype="bfloat16"` runs the encoder's matrix products under bf16 autocast (layer norms
    and softmax stay fp32), faster on CPUs with bf16 units and on GPUs; the vectors are
    normalised in fp32. `benchmarks/retrieval_speed.py embedding` measures speed and cosine.
    """

    def __init__(
        self,
        name: str = "all-minilm-l6-v2",
        batch_size: int = 64,
        model: Any = None,
        dtype: str = "float32",
        device: str | None = None,
    ):
        from sentence_transformers import SentenceTransformer

        self.name = model_id(name)
        self.batch_size = batch_size
        self.model = model or SentenceTransformer(resolve(name, "embedder"), device=resolve_device(device or "auto"))
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"embedder dtype must be float32 or bfloat16, got {dtype!r}")
        self.dtype = dtype
        self.dim: int = int(self.model.get_embedding_dimension())
        self._lock = threading.Lock()  # a server's retriever and monitoring share one: a tokenizer is not thread-safe

    @property
    def max_tokens(self) -> int:
        """Text tokens the encoder reads before truncating (special tokens excluded)."""
        return int(self.model.max_seq_length) - self.model.tokenizer.num_special_tokens_to_add()

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many of `texts` the encoder would cut at its sequence limit."""
        tokenizer, limit = self.model.tokenizer, self.max_tokens
        lengths = tokenizer(list(texts), add_special_tokens=False, return_length=True, verbose=False)["length"]
        return sum(n > limit for n in lengths)

    def embed(self, texts: Sequence[str], progress: bool = False) -> Any:
        """A (len(texts), dim) float32 numpy array of unit vectors (one call at a time)."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return self._embed(texts, progress)

    def _embed(self, texts: Sequence[str], progress: bool) -> Any:
        import numpy as np

        if self.dtype == "float32":
            vectors = self._encode(texts, progress, normalize=True)
        else:
            import torch

            with torch.autocast(self.model.device.type, dtype=torch.bfloat16):
                vectors = np.asarray(self._encode(texts, progress, normalize=False), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode(self, texts: Sequence[str], progress: bool, normalize: bool) -> Any:
        return self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )


@cache
def embedder_tokenizer(name: str) -> tuple[Any, int]:
    """An embedder's tokenizer and its text-token limit, without loading the encoder."""
    from pathlib import Path

    from transformers import AutoTokenizer

    folder = resolve(name, "embedder")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = Path(folder) / "sentence_bert_config.json"
    limit = json.loads(config.read_text())["max_seq_length"] if config.is_file() else tokenizer.model_max_length
    return tokenizer, int(limit) - tokenizer.num_special_tokens_to_add()
