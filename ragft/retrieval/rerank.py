"""Reranking: rescore a first stage's top hits with a stronger, slower model.

A cross-encoder (sentence-transformers `CrossEncoder`, any local folder or hub id) where
one is available; otherwise the generator as a pointwise judge, scoring each passage by
log P(yes) - log P(no) for "does this passage answer the question?".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ragft.progress import progress
from ragft.retrieval.retriever import Retriever
from ragft.types import Hit

if TYPE_CHECKING:
    from ragft.generation import Generator

JUDGE_SYSTEM = "Decide whether the passage answers the question. Reply with yes or no only."


class Scorer(Protocol):
    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderScorer:
    """Relevance from a cross-encoder reading query and passage together."""

    def __init__(self, name: str, batch_size: int = 32, device: str = "auto"):
        from sentence_transformers import CrossEncoder

        from ragft.models import resolve, resolve_device

        self.model = CrossEncoder(resolve(name, "reranker"), device=resolve_device(device))
        self.batch_size = batch_size

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        pairs = [(query, p) for p in passages]
        return [float(s) for s in self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)]


class GeneratorScorer:
    """The generator as a pointwise judge: log P(yes) - log P(no) at the answer position."""

    def __init__(self, generator: Generator, max_passage_tokens: int = 384):
        self.generator = generator
        self.max_passage_tokens = max_passage_tokens
        tok = generator.tokenizer
        self.yes = [tok.encode(w, add_special_tokens=False)[0] for w in ("yes", "Yes")]
        self.no = [tok.encode(w, add_special_tokens=False)[0] for w in ("no", "No")]

    def prompt(self, query: str, passage: str) -> str:
        ids = self.generator.encode(passage)[: self.max_passage_tokens]
        passage = self.generator.tokenizer.decode(ids)
        user = f"Passage: {passage}\n\nQuestion: {query}\n\nDoes the passage answer the question?"
        return self.generator.render([{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}])

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        import torch

        gen = self.generator
        out: list[float] = []
        for start in range(0, len(passages), gen.batch_size):
            encoded = [gen.encode(self.prompt(query, p)) for p in passages[start : start + gen.batch_size]]
            ids, mask = gen.left_padded(encoded)
            dev = next(gen.model.parameters()).device
            with torch.inference_mode():
                logits = gen.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), logits_to_keep=1).logits
            logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
            yes = torch.logsumexp(logp[:, self.yes], dim=-1)
            no = torch.logsumexp(logp[:, self.no], dim=-1)
            out.extend((yes - no).tolist())
        return out


class RerankingRetriever:
    """Takes the first stage's top `depth` hits and reorders them by the scorer."""

    def __init__(self, base: Retriever, scorer: Scorer, depth: int = 20):
        self.base = base
        self.scorer = scorer
        self.depth = depth

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        first = self.base.retrieve(queries, max(k, self.depth))
        out = []
        bar = progress(total=len(queries), desc="reranking", unit="q")
        for query, hits in zip(queries, first):
            scores = self.scorer.score(query, [h.chunk.text for h in hits])
            order = sorted(range(len(hits)), key=lambda i: (-scores[i], hits[i].rank))
            out.append([Hit(hits[i].chunk, scores[i], rank) for rank, i in enumerate(order[:k])])
            bar.update(1)
        bar.close()
        return out


def make_scorer(rerank: str, generator: Any = None, device: str = "auto") -> Scorer:
    """`generator` for the pointwise judge, else a cross-encoder name or folder (on `device`)."""
    if rerank == "generator":
        if generator is None:
            raise ValueError("the generator reranker needs a generator")
        return GeneratorScorer(generator)
    return CrossEncoderScorer(rerank, device=device)
