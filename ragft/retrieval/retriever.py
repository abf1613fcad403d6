"""Retrievers: anything that turns queries into ranked Hits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ragft.retrieval.embedder import Embedder
from ragft.retrieval.index import VectorIndex
from ragft.types import Hit


class Retriever(Protocol):
    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]: ...


class DenseRetriever:
    """Embeds queries with the index's own embedder and searches the vector index."""

    def __init__(self, embedder: Embedder, index: VectorIndex):
        if embedder.name != index.embedder:
            from ragft.errors import ArtifactError

            raise ArtifactError(
                f"index built with embedder {index.embedder!r}, queries embedded with {embedder.name!r}"
            )
        self.embedder = embedder
        self.index = index

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self.search(self.embedder.embed(queries), k)

    def search(self, vectors: Any, k: int) -> list[list[Hit]]:
        """Hits for query vectors made elsewhere (HyDE averages a query with a draft answer)."""
        return [
            [Hit(chunk, score, rank) for rank, (chunk, score) in enumerate(row)]
            for row in self.index.search(vectors, k)
        ]
