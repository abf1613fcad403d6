"""Lexical retrieval with BM25 (bm25s), English Snowball stemming and stop words."""

from __future__ import annotations

from collections.abc import Sequence

from ragft.types import Chunk, Hit


class BM25Retriever:
    """BM25 over chunk texts. Defaults k1=0.9, b=0.4 are Anserini's, the usual BEIR baseline."""

    def __init__(self, chunks: Sequence[Chunk], k1: float = 0.9, b: float = 0.4):
        import bm25s
        import Stemmer

        self.chunks = list(chunks)
        self._stemmer = Stemmer.Stemmer("english")
        self._bm25s = bm25s
        tokens = bm25s.tokenize(
            [c.text for c in self.chunks], stopwords="en", stemmer=self._stemmer, show_progress=False
        )
        self.index = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.index.index(tokens, show_progress=False)

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = min(k, len(self.chunks))
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", stemmer=self._stemmer, show_progress=False)
        ids, scores = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return [
            [Hit(self.chunks[int(i)], float(s), rank) for rank, (i, s) in enumerate(zip(row_ids, row_scores)) if s > 0]
            for row_ids, row_scores in zip(ids, scores)
        ]
