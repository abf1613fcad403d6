"""Composing a retriever from settings: first stage, query-side stages, reranking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragft.retrieval.retriever import Retriever
from ragft.types import Chunk

METHODS = ("dense", "bm25", "hybrid")


@dataclass(frozen=True)
class QuerySide:
    """Optional query-side stages applied on top of a first-stage method."""

    hyde: bool = False
    multi_query: int = 0
    rerank: str = ""
    """'' (off), 'generator', or a cross-encoder name or folder."""
    rerank_depth: int = 20

    def suffix(self) -> str:
        parts = ["hyde"] * self.hyde + [f"mq{self.multi_query}"] * bool(self.multi_query)
        parts += ["rerank"] * bool(self.rerank)
        return "".join(f"+{p}" for p in parts)


def make_retriever(
    method: str,
    chunks: list[Chunk],
    dense: Any = None,
    generator: Any = None,
    query_side: QuerySide | None = None,
    weights: tuple[float, float] = (1.0, 1.0),
    device: str = "auto",
) -> Retriever:
    """Compose a retriever: dense, bm25 or hybrid (RRF with (dense, bm25) weights), then
    HyDE on the dense part, multi-query expansion, reranking, as `query_side` asks; a
    cross-encoder reranker runs on `device`."""
    from ragft.retrieval.bm25 import BM25Retriever
    from ragft.retrieval.hybrid import HybridRetriever
    from ragft.retrieval.query import HydeRetriever, MultiQueryRetriever
    from ragft.retrieval.rerank import RerankingRetriever, make_scorer

    if method not in METHODS:
        raise ValueError(f"unknown retrieval method {method!r}; choose one of {', '.join(METHODS)}")
    qs = query_side or QuerySide()
    first: Retriever | None = None
    if method in ("dense", "hybrid"):
        first = HydeRetriever(dense, generator) if qs.hyde else dense
    if method in ("bm25", "hybrid"):
        bm25 = BM25Retriever(chunks)
        first = bm25 if first is None else HybridRetriever([first, bm25], list(weights))
    assert first is not None
    if qs.multi_query:
        first = MultiQueryRetriever(first, generator, qs.multi_query)
    if qs.rerank:
        first = RerankingRetriever(first, make_scorer(qs.rerank, generator, device), qs.rerank_depth)
    return first
