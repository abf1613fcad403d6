"""Question answering over a corpus as an experiment task: corpus, index, retriever,
examples; prompts with retrieved passages; SQuAD EM and F1; RAFT training records."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.arms import FEWSHOT, Arm, build_prompt
from ragft.corpus import load_corpus
from ragft.corpus.chunking import chunk_for_embedder
from ragft.corpus.loaders import JsonlFields
from ragft.errors import RagftError
from ragft.finetune.data import SFTRecord, gold_chunk, make_record, quoted_answer, raft_passages
from ragft.io import append_jsonl, read_jsonl, sha256_file, sha256_json
from ragft.metrics import recall_at_k
from ragft.models import model_id
from ragft.prompts import get_template
from ragft.retrieval import DenseRetriever, Retriever, VectorIndex
from ragft.retrieval.build import sync_index
from ragft.retrieval.compose import QuerySide, make_retriever
from ragft.tasks.qa import load_examples, score
from ragft.types import Chunk, Example, Hit

if TYPE_CHECKING:
    from ragft.config import Config
    from ragft.experiment import Resources
    from ragft.generation import Generator


class QaRun:
    """A QA task prepared for one run folder: the index is synced and test passages cached there."""

    metrics = ("f1", "em")
    oracle = "the passage of the question's document that holds its answer"

    def __init__(self, run: Path, config: Config, resources: Resources):
        data, c = config.data, config.chunking
        self.config = config
        self.corpus = load_corpus(
            config.path(data.corpus), fields=JsonlFields(data.text_field, data.id_field), skip_bad=data.skip_bad
        )
        self.chunks = chunk_for_embedder(self.corpus, config.models.embedder, c.unit, c.chunk_size, c.chunk_overlap)
        self.index, _ = sync_index(
            run / "index",
            self.chunks,
            model_id(config.models.embedder),
            lambda: resources.embedder,
            {"chunking": asdict(config.chunking)},
            config.retrieval.index,
            config.retrieval.index_settings(),
        )
        examples_path = config.path(data.examples)
        examples = load_examples(examples_path)
        self.examples_sha256 = sha256_file(examples_path)
        self.train = _limit([e for e in examples if e.split == "train"], data.train_limit)
        self.test = _limit([e for e in examples if e.split == "test"], data.test_limit)
        if not self.test:
            raise RagftError(f"{examples_path}: no test examples")
        self.test_ids = [e.id for e in self.test]
        self.retriever = _retriever(config, self.chunks, self.index, resources)
        self.retrieval_identity = [self.index.embedder, self.index.corpus_sha256, _retrieval_key(config)]
        key = sha256_json(self.retrieval_identity)
        hits_path = run / "retrieval" / "test_hits.jsonl"
        self.test_hits = _test_hits(hits_path, self.test, self.index, self.retriever, key, config.retrieval.k)

    def identity(self, arm: Arm) -> Any:
        return {
            "template": asdict(get_template(arm.template)),
            "examples": self.examples_sha256,
            "retrieval": self.retrieval_identity if arm.context else None,
        }

    def training_identity(self, arm: Arm) -> Any:
        return [self.index.corpus_sha256, _retrieval_key(self.config)]

    def context(self, arm: Arm, i: int) -> list[Chunk]:
        """The passages test example i is shown: retrieved, the gold one (oracle), or none."""
        if not arm.context:
            return []
        if arm.oracle:
            gold = self.gold_chunks[i]
            return [gold] if gold is not None else []
        return [h.chunk for h in self.test_hits[i]]

    @cached_property
    def chunks_by_doc(self) -> dict[str, list[Chunk]]:
        by_doc: dict[str, list[Chunk]] = {}
        for c in self.chunks:
            by_doc.setdefault(c.doc_id, []).append(c)
        return by_doc

    @cached_property
    def gold_chunks(self) -> list[Chunk | None]:
        """Each test example's gold passage (None where no chunk of its document holds an answer)."""
        return [gold_chunk(e, self.chunks_by_doc) for e in self.test]

    def prompts(self, arm: Arm, generator: Generator) -> list[str]:
        shots = self.train[:FEWSHOT]
        return [
            build_prompt(generator, arm, e, [c.text for c in self.context(arm, i)], shots)
            for i, e in enumerate(self.test)
        ]

    def answers(self, i: int) -> tuple[str, ...]:
        return self.test[i].answers

    def retrieved(self, arm: Arm, i: int) -> tuple[str, ...]:
        return tuple(c.id for c in self.context(arm, i))

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        return score(output, self.test[i].answers), ""

    def train_records(self, arm: Arm, generator: Generator, config: Config) -> list[SFTRecord]:
        """SFT records; `rag+ft` prompts carry RAFT context from the same retriever.

        Passages from the test examples' documents are kept out of training prompts.
        """
        ft = config.finetune
        rng = random.Random(config.experiment.seed)
        by_doc = self.chunks_by_doc
        held_out = {e.doc_id for e in self.test if e.doc_id}
        n_passages = ft.distractors + 1
        hits: list[list[Hit]] = [[] for _ in self.train]
        if arm.context:
            raw = self.retriever.retrieve([e.question for e in self.train], n_passages + 8)
            hits = [[h for h in row if h.chunk.doc_id not in held_out] for row in raw]
        records = []
        eos = generator.tokenizer.eos_token_id
        for e, row in zip(self.train, hits):
            passages, target = [], e.answers[0]
            if arm.context:
                gold = gold_chunk(e, by_doc)
                shown = raft_passages(e, row, gold, n_passages, ft.p_no_gold, rng)
                passages = [c.text for c in shown]
                if ft.quote:
                    target = quoted_answer(gold.text if gold in shown else None, e.answers[0])
            prompt = build_prompt(generator, arm, e, passages, [])
            answer = generator.encode(target)
            records.append(make_record(e.id, generator.encode(prompt), answer, eos, ft.max_length))
        return records

    def summary(self, run: Path) -> dict[str, Any]:
        k = self.config.retrieval.k
        scored = [(e, hits) for e, hits in zip(self.test, self.test_hits) if e.doc_id]
        recall = sum(recall_at_k([h.chunk.doc_id for h in hits], {e.doc_id}, k) for e, hits in scored)
        return {
            f"recall@{k}": recall / max(1, len(scored)),
            "chunks": len(self.chunks),
            "documents": len(self.corpus),
            "empty_documents": len(self.corpus.empty),
            "unreadable_skipped": self.corpus.skipped,
            "index_bytes": sum(f.stat().st_size for f in (run / "index").iterdir()),
        }

    def passages(self) -> dict[str, str]:
        return {c.id: c.text for c in self.chunks}


class _Lazy:
    """A retriever built on first use, so a fully cached re-run loads no model."""

    def __init__(self, build: Callable[[], Retriever]):
        self.build = build

    @cached_property
    def inner(self) -> Retriever:
        return self.build()

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self.inner.retrieve(queries, k)


def _retriever(config: Config, chunks: list[Chunk], index: VectorIndex, resources: Resources) -> Retriever:
    """The retriever `retrieval.*` describes, shared by test questions and RAFT training contexts."""
    r = config.retrieval
    query_side = QuerySide(r.hyde, r.multi_query, r.rerank, r.rerank_depth)
    needs_generator = r.hyde or r.multi_query or r.rerank == "generator"
    return _Lazy(
        lambda: make_retriever(
            r.method,
            chunks,
            DenseRetriever(resources.embedder, index) if r.method != "bm25" else None,
            resources.generator if needs_generator else None,
            query_side,
            (r.hybrid_weights[0], r.hybrid_weights[1]),
        )
    )


def _retrieval_key(config: Config) -> dict[str, Any]:
    """Retrieval settings that change which passages come back."""
    r = asdict(config.retrieval)
    for name in ("index", "hnsw_m", "ef_construction", "ef_search", "nprobe"):
        r.pop(name)  # approximate-search settings: part of the index's own identity below
    if config.retrieval.hyde or config.retrieval.multi_query or config.retrieval.rerank == "generator":
        r["generator"] = model_id(config.models.generator)
    return r


def _limit(items: list[Example], n: int) -> list[Example]:
    return items[:n] if n > 0 else items


def _test_hits(
    path: Path, test: list[Example], index: VectorIndex, retriever: Retriever, key: str, k: int
) -> list[list[Hit]]:
    """Top-k passages for every test question, cached beside the run by what made them (`key`)."""
    by_id = {c.id: c for c in index.chunks}
    cached: dict[str, list[Hit]] = {}
    if path.is_file():
        for _, row in read_jsonl(path):
            if row["key"] == key and all(cid in by_id for cid in row["chunks"]):
                cached[row["question"]] = [
                    Hit(by_id[cid], score, rank) for rank, (cid, score) in enumerate(zip(row["chunks"], row["scores"]))
                ]
    missing = sorted({e.question for e in test} - cached.keys())
    if missing:
        fresh = dict(zip(missing, retriever.retrieve(missing, k)))
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"key": key, "question": q, "chunks": [h.chunk.id for h in hits], "scores": [h.score for h in hits]}
            for q, hits in fresh.items()
        ]
        append_jsonl(path, rows)
        cached.update(fresh)
    return [cached[e.question] for e in test]
