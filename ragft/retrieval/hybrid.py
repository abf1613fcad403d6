"""Hybrid retrieval: several retrievers' rankings fused by reciprocal rank fusion."""

from __future__ import annotations

from collections.abc import Sequence

from ragft.retrieval.retriever import Retriever
from ragft.types import Hit


def rrf(rankings: Sequence[Sequence[Hit]], weights: Sequence[float], k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: score(d) = sum over rankings of weight / (k + rank + 1)."""
    scores: dict[str, float] = {}
    chunks = {}
    for hits, weight in zip(rankings, weights):
        for hit in hits:
            scores[hit.chunk.id] = scores.get(hit.chunk.id, 0.0) + weight / (k + hit.rank + 1)
            chunks[hit.chunk.id] = hit.chunk
    order = sorted(scores, key=lambda cid: (-scores[cid], cid))
    return [Hit(chunks[cid], scores[cid], rank) for rank, cid in enumerate(order)]


class HybridRetriever:
    """Fuses the top `depth` hits of each retriever with RRF and keeps the best k."""

    def __init__(
        self, retrievers: Sequence[Retriever], weights: Sequence[float] | None = None, depth: int = 100, rrf_k: int = 60
    ):
        self.retrievers = list(retrievers)
        self.weights = list(weights or [1.0] * len(self.retrievers))
        if len(self.weights) != len(self.retrievers):
            raise ValueError(f"{len(self.retrievers)} retrievers but {len(self.weights)} weights")
        self.depth = depth
        self.rrf_k = rrf_k

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = max(k, self.depth)
        per_retriever = [r.retrieve(queries, depth) for r in self.retrievers]
        return [
            rrf([rankings[q] for rankings in per_retriever], self.weights, self.rrf_k)[:k] for q in range(len(queries))
        ]
