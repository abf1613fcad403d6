"""Sentence-transformers embedder with normalised float32 output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragft.models import model_id, resolve


class Embedder:
    """Embeds texts into unit vectors (inner product = cosine similarity)."""

    def __init__(self, name: str = "all-minilm-l6-v2", batch_size: int = 64, model: Any = None):
        from sentence_transformers import SentenceTransformer

        self.name = model_id(name)
        self.batch_size = batch_size
        self.model = model or SentenceTransformer(resolve(name, "embedder"), device="cpu")
        self.dim: int = int(self.model.get_embedding_dimension())

    def embed(self, texts: Sequence[str], progress: bool = False) -> Any:
        """A (len(texts), dim) float32 numpy array of unit vectors."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
