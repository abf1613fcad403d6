"""A QA task's corpus prepared for one retrieval setup (a pipeline's chunking, embedder and
retrieval settings): its chunks, the vector index and retriever (built on first use and
kept in the run folder), the test questions' cached passages and each one's gold passage,
and the identities the index, retrieval and oracle stages are keyed by (`ragft.keys`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.corpus.chunking import chunk_for_embedder
from ragft.errors import ArtifactError
from ragft.finetune.data import gold_chunk
from ragft.io import append_jsonl, read_jsonl, read_manifest, sha256_json
from ragft.keys import hits_key
from ragft.metrics import recall_at_k
from ragft.models import model_id
from ragft.retrieval import DenseRetriever, Retriever, VectorIndex
from ragft.retrieval.build import sync_index
from ragft.retrieval.compose import QuerySide, make_retriever
from ragft.retrieval.index import IndexSettings, choose_kind, corpus_hash
from ragft.types import Chunk, Example, Hit

if TYPE_CHECKING:
    from ragft.config import ChunkingConfig, RetrievalConfig
    from ragft.corpus.loaders import Corpus
    from ragft.resources import Models


class QaRetrieval:
    """Chunks, index, retriever and test passages of one retrieval setup in a run folder."""

    def __init__(
        self,
        run: Path,
        corpus: Corpus,
        test: Sequence[Example],
        chunking: ChunkingConfig,
        retrieval: RetrievalConfig,
        models: Models,
    ):
        c = chunking
        self.run = run
        self.corpus = corpus
        self.test = list(test)
        self.chunking = chunking
        self.settings = retrieval
        self.models = models
        self.chunks = chunk_for_embedder(corpus, models.settings.embedder, c.unit, c.chunk_size, c.chunk_overlap)
        self.test_documents = {e.doc_id for e in self.test if e.doc_id}
        """Documents that hold test questions: their passages never reach a training prompt."""

    # Identities: what each stage's key is made of (see ragft.keys).

    @cached_property
    def chunks_sha256(self) -> str:
        return corpus_hash(self.chunks)

    def index_settings(self) -> dict[str, Any]:
        """The embedder and index settings a dense search reads (the index kind resolved by size)."""
        m, r = self.models.settings, self.settings
        kind = choose_kind(r.index, len(self.chunks))
        settings = {"hnsw": ("hnsw_m", "ef_construction", "ef_search"), "ivf": ("nprobe",), "ivfpq": ("nprobe",)}
        return {
            "embedder": model_id(m.embedder),
            "embedder_dtype": m.embedder_dtype,
            "index": kind,
            **{name: getattr(r, name) for name in settings.get(kind, ())},
        }

    def index_identity(self) -> Any:
        if self.settings.method == "bm25":
            return None  # BM25 alone searches no vector index
        return {"chunks": self.chunks_sha256, **self.index_settings()}

    def retriever_identity(self) -> Any:
        r = self.settings
        out: dict[str, Any] = {"chunks": self.chunks_sha256, "method": r.method}
        index = self.index_identity()
        if index is not None:
            out["index"] = index
        if r.method == "hybrid":
            out["hybrid_weights"] = r.hybrid_weights
        if r.hyde and r.method != "bm25":
            out["hyde"] = True
        if r.multi_query:
            out["multi_query"] = r.multi_query
        if r.rerank:
            out["rerank"] = r.rerank if r.rerank == "generator" else model_id(r.rerank)
            out["rerank_depth"] = r.rerank_depth
        if out.get("hyde") or r.multi_query or r.rerank == "generator":
            out["generator"] = self.models.generator_identity()
        return out

    def oracle_identity(self) -> Any:
        return {"chunks": self.chunks_sha256}  # the gold chunk of each test question's document

    # Built on first use.

    @property
    def index_folder(self) -> Path:
        """One folder per embedder, embedder dtype and index kind: what the stored vectors and
        the index structure depend on (other settings are applied to it in place, no embedding)."""
        s = self.index_settings()
        return self.run / "index" / sha256_json([s["embedder"], s["embedder_dtype"], s["index"]])[:12]

    @cached_property
    def index(self) -> VectorIndex:
        """The vector index, synced in `index_folder` (a changed corpus re-embeds only its
        changed chunks), or the one passed in that holds these chunks."""
        settings = self.index_settings()
        r = self.settings
        given = self.models.index(self.chunks_sha256, settings["embedder_dtype"], settings["index"])
        if given is not None:  # built in Python: kept in the run folder too, for its report
            try:
                saved = read_manifest(self.index_folder, "vector-index").get("corpus_sha256")
            except ArtifactError:
                saved = None
            if saved != given.corpus_sha256:
                given.save(self.index_folder)
            return given
        index, _ = sync_index(
            self.index_folder,
            self.chunks,
            settings["embedder"],
            self.models.embedder,
            {"chunking": asdict(self.chunking), "embedder_dtype": settings["embedder_dtype"]},
            r.index,
            IndexSettings(r.hnsw_m, r.ef_construction, r.ef_search, r.nprobe),
        )
        return index

    @cached_property
    def retriever(self) -> Retriever:
        """The retriever `retrieval.*` describes, shared by test questions and training contexts."""
        r = self.settings
        query_side = QuerySide(r.hyde, r.multi_query, r.rerank, r.rerank_depth)
        needs_generator = r.hyde or r.multi_query or r.rerank == "generator"
        return make_retriever(
            r.method,
            self.chunks,
            DenseRetriever(self.models.embedder(), self.index) if r.method != "bm25" else None,
            self.models.generator() if needs_generator else None,
            query_side,
            (r.hybrid_weights[0], r.hybrid_weights[1]),
            device=self.models.settings.device,
        )

    @cached_property
    def test_hits(self) -> list[list[Hit]]:
        """The top k passages of every test question, cached in the run folder by their key."""
        key = hits_key(self, self.settings.k)
        path = self.run / "retrieval" / "test_hits.jsonl"
        by_id = {c.id: c for c in self.chunks}
        return _test_hits(path, self.test, by_id, lambda: self.retriever, key, self.settings.k)

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

    def training_hits(self, examples: Sequence[Example], n: int) -> list[list[Hit]]:
        """Retrieved passages for training questions, leaving out the test examples'
        documents; at least n where there are."""
        raw = self.retriever.retrieve([e.question for e in examples], n + 8)
        return [[h for h in row if h.chunk.doc_id not in self.test_documents] for row in raw]

    def prepare(self) -> None:
        """Build and save the index (where one is searched), for processes that only read it."""
        if self.index_identity() is not None:
            self.index  # noqa: B018 (built and saved)

    def summary(self, retrieves: bool = True) -> dict[str, Any]:
        """The report's retrieval block: recall@k of the test questions' documents, the corpus
        and the index size; without `retrieves`, nothing that needs an index."""
        k = self.settings.k
        out: dict[str, Any] = {}
        if retrieves and (self.settings.method != "bm25" or "test_hits" in self.__dict__):
            scored = [(e, hits) for e, hits in zip(self.test, self.test_hits) if e.doc_id]
            recall = sum(recall_at_k([h.chunk.doc_id for h in hits], {e.doc_id}, k) for e, hits in scored)
            out[f"recall@{k}"] = recall / max(1, len(scored))
        out.update(
            chunks=len(self.chunks),
            documents=len(self.corpus),
            empty_documents=len(self.corpus.empty),
            unreadable_skipped=self.corpus.skipped,
        )
        if retrieves and self.index_identity() is not None:
            self.index  # noqa: B018 (built and saved if it was not yet)
            out["index_bytes"] = sum(f.stat().st_size for f in self.index_folder.iterdir())
        return out


def _test_hits(
    path: Path,
    test: list[Example],
    by_id: dict[str, Chunk],
    retriever: Callable[[], Retriever],
    key: str,
    k: int,
) -> list[list[Hit]]:
    """Top-k passages for every test question, cached beside the run by what made them (`key`);
    the retriever is built only when some question is missing."""
    cached: dict[str, list[Hit]] = {}
    if path.is_file():
        for _, row in read_jsonl(path, torn_tail_ok=True):  # a kill mid-append tears the last line
            if row["key"] == key and all(cid in by_id for cid in row["chunks"]):
                cached[row["question"]] = [
                    Hit(by_id[cid], score, rank) for rank, (cid, score) in enumerate(zip(row["chunks"], row["scores"]))
                ]
    missing = sorted({e.question for e in test} - cached.keys())
    if missing:
        fresh = dict(zip(missing, retriever().retrieve(missing, k)))
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"key": key, "question": q, "chunks": [h.chunk.id for h in hits], "scores": [h.score for h in hits]}
            for q, hits in fresh.items()
        ]
        append_jsonl(path, rows)
        cached.update(fresh)
    return [cached[e.question] for e in test]
