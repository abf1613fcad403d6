"""Query-side expansion with the generator: HyDE and multi-query retrieval.

Both cost a generation per query; `ragft eval-retrieval --hyde / --multi-query N` measures
what they buy on judged data before an experiment uses them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ragft.retrieval.hybrid import rrf
from ragft.retrieval.retriever import DenseRetriever, Retriever
from ragft.types import Hit

if TYPE_CHECKING:
    from ragft.generation import Generator

HYDE_SYSTEM = "Write a short passage, as it would appear in a reference text, that answers the question."
MULTI_QUERY_SYSTEM = (
    "Rewrite the question as {n} different search queries that would find the answer. "
    "Write one query per line, with no numbering and nothing else."
)


class HydeRetriever:
    """HyDE: the generator drafts a passage that would answer each query; the search vector
    is the normalised sum of the query's and the draft's embeddings."""

    def __init__(self, dense: DenseRetriever, generator: Generator, max_new_tokens: int = 96):
        self.dense = dense
        self.generator = generator
        self.max_new_tokens = max_new_tokens

    def drafts(self, queries: Sequence[str]) -> list[str]:
        prompts = [
            self.generator.render([{"role": "system", "content": HYDE_SYSTEM}, {"role": "user", "content": q}])
            for q in queries
        ]
        return [g.text for g in self.generator.generate(prompts, "HyDE drafts", self.max_new_tokens)]

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import numpy as np

        embed = self.dense.embedder.embed
        vectors = embed(queries) + embed(self.drafts(queries))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return self.dense.search(np.ascontiguousarray(vectors, dtype=np.float32), k)


def parse_queries(text: str, n: int) -> list[str]:
    """Up to n distinct queries from a one-per-line answer, numbering and bullets removed."""
    out: list[str] = []
    for line in text.splitlines():
        query = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip().strip('"')
        if query and query.lower() not in (q.lower() for q in out):
            out.append(query)
    return out[:n]


class MultiQueryRetriever:
    """The generator rewrites each query n ways; the rankings for the query and its
    rewrites are fused by reciprocal rank fusion."""

    def __init__(self, base: Retriever, generator: Generator, n: int = 3, depth: int = 100):
        self.base = base
        self.generator = generator
        self.n = n
        self.depth = depth

    def rewrites(self, queries: Sequence[str]) -> list[list[str]]:
        system = MULTI_QUERY_SYSTEM.format(n=self.n)
        prompts = [
            self.generator.render([{"role": "system", "content": system}, {"role": "user", "content": q}])
            for q in queries
        ]
        outputs = self.generator.generate(prompts, "query rewrites", 24 * self.n)
        return [parse_queries(g.text, self.n) for g in outputs]

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        groups = [[q, *extra] for q, extra in zip(queries, self.rewrites(queries))]
        flat = [q for group in groups for q in group]
        rankings = iter(self.base.retrieve(flat, max(k, self.depth)))
        return [rrf([next(rankings) for _ in group], [1.0] * len(group))[:k] for group in groups]
