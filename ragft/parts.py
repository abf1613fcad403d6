"""Parts that pipelines are built from in Python: an `Index` with the retrievers that search
it, `SolvedExamples` for text-to-SQL, and a fine-tuning spec (`LoRA`, `FineTune`) with its
records (`RAFT` or `SFT`).

Each part is usable on its own (an index searches, a retriever retrieves) and carries the
settings the runner's cache keys are made of.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.config import (
    ChunkingConfig,
    FinetuneConfig,
    OptimizeConfig,
    PricesConfig,
    RetrievalConfig,
    SynthConfig,
    check_settings,
)
from ragft.errors import InputError

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.retrieval import Embedder, VectorIndex
    from ragft.types import Chunk, Document, Hit

QUERY_SIDE = ("hyde", "multi_query", "rerank", "rerank_depth")


class Index:
    """A searchable corpus: its chunks, their embeddings in a FAISS index, and the
    retrievers that search it (`dense`, `bm25`, `hybrid`)."""

    def __init__(self, chunks: list[Chunk], vectors: VectorIndex, embedder: Embedder, chunking: ChunkingConfig):
        self.chunks = chunks
        self.vectors = vectors
        self.embedder = embedder
        self.chunking = chunking

    @classmethod
    def build(
        cls,
        docs: Sequence[Document],
        embedder: str | Embedder = "all-minilm-l6-v2",
        *,
        chunk_size: int = 500,
        chunk_overlap: int = 50,
        unit: str = "characters",
        kind: str = "auto",
        embedder_dtype: str = "float32",
        device: str = "auto",
        folder: str | Path | None = None,
    ) -> Index:
        """Chunk the documents, embed the chunks (`embedder`: a name, or a loaded `Embedder`)
        and index them (`kind`: auto, flat, hnsw, ivf, ivfpq). With `folder` the index is saved
        there, and building the same corpus again embeds only what changed."""
        from ragft.corpus.chunking import chunk_for_embedder
        from ragft.models import resolve_device
        from ragft.retrieval import Embedder, sync_index

        settings = {"unit": unit, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap}
        chunking = check_settings(ChunkingConfig, settings, "chunking", "Index.build")
        check_settings(RetrievalConfig, {"index": kind}, "retrieval", "Index.build")
        if isinstance(embedder, str):
            embedder = Embedder(embedder, dtype=embedder_dtype, device=resolve_device(device))
        chunks = chunk_for_embedder(docs, embedder.name, unit, chunk_size, chunk_overlap)
        meta = {"chunking": dataclasses.asdict(chunking), "embedder_dtype": embedder.dtype}
        vectors, _ = sync_index(folder, chunks, embedder.name, lambda: embedder, meta, kind)
        return cls(chunks, vectors, embedder, chunking)

    def __repr__(self) -> str:
        return f"Index({len(self.chunks)} chunks, {self.embedder.name}, {self.vectors.kind})"

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The k chunks closest to the query (dense search)."""
        return self.dense(k).retrieve([query])[0]

    def dense(self, k: int = 3, **query_side: Any) -> Retrieval:
        """Dense retrieval of k chunks. `hyde`, `multi_query`, `rerank` and `rerank_depth` add
        query-side stages (HyDE, rewrites and generator reranking use the pipeline's generator)."""
        return self._retrieval("dense", k, query_side)

    def bm25(self, k: int = 3, **query_side: Any) -> Retrieval:
        """Lexical BM25 retrieval of k chunks."""
        return self._retrieval("bm25", k, query_side)

    def hybrid(self, k: int = 3, weights: tuple[float, float] = (1.0, 1.0), **query_side: Any) -> Retrieval:
        """Dense and BM25 rankings fused by reciprocal rank fusion, with (dense, bm25) weights."""
        return self._retrieval("hybrid", k, query_side, [float(w) for w in weights])

    def _retrieval(
        self, method: str, k: int, query_side: dict[str, Any], weights: list[float] | None = None
    ) -> Retrieval:
        unknown = sorted(set(query_side) - set(QUERY_SIDE))
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], QUERY_SIDE, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(QUERY_SIDE)})"
            raise InputError(f"Index.{method}: unknown setting {unknown[0]!r}{hint}")
        values = {"method": method, "k": k, "index": self.vectors.requested, **query_side}
        if weights is not None:
            values["hybrid_weights"] = weights
        return Retrieval(self, check_settings(RetrievalConfig, values, "retrieval", f"Index.{method}"))


@dataclass(frozen=True)
class Retrieval:
    """A retriever over an `Index`: its method, k and query-side settings."""

    index: Index = field(compare=False, repr=False)
    settings: RetrievalConfig

    @property
    def k(self) -> int:
        return self.settings.k

    def retrieve(self, questions: Sequence[str], generator: Generator | None = None) -> list[list[Hit]]:
        """The top k chunks for each question (HyDE, rewrites and generator reranking draft
        with `generator`)."""
        from ragft.retrieval import DenseRetriever
        from ragft.retrieval.compose import QuerySide, make_retriever

        r = self.settings
        if (r.hyde or r.multi_query or r.rerank == "generator") and generator is None:
            raise InputError("HyDE, query rewrites and generator reranking need a generator: retrieve(..., generator)")
        dense = DenseRetriever(self.index.embedder, self.index.vectors) if r.method != "bm25" else None
        query_side = QuerySide(r.hyde, r.multi_query, r.rerank, r.rerank_depth)
        weights = (r.hybrid_weights[0], r.hybrid_weights[1])
        return make_retriever(r.method, self.index.chunks, dense, generator, query_side, weights).retrieve(
            list(questions), r.k
        )


class SolvedExamples:
    """Retrieval for text-to-SQL: each test question is shown the `k` training questions
    closest to it (by `embedder`) with their SQL; with `hyde`, also those whose SQL is
    closest to a query the generator drafts zero-shot, fused by reciprocal rank."""

    def __init__(
        self,
        k: int = 3,
        embedder: str | Embedder = "all-minilm-l6-v2",
        *,
        hyde: bool = False,
        embedder_dtype: str = "float32",
        device: str = "auto",
    ):
        from ragft.models import resolve_device
        from ragft.retrieval import Embedder

        self.settings = check_settings(RetrievalConfig, {"k": k, "hyde": hyde}, "retrieval", "SolvedExamples")
        if isinstance(embedder, str):
            embedder = Embedder(embedder, dtype=embedder_dtype, device=resolve_device(device))
        self.embedder = embedder

    @property
    def k(self) -> int:
        return self.settings.k

    def __repr__(self) -> str:
        return f"SolvedExamples(k={self.k}, {self.embedder.name}{', hyde' if self.settings.hyde else ''})"


@dataclass(frozen=True)
class RAFT:
    """Training records with context from the pipeline's own retriever: the gold passage
    among `distractors` retrieved ones, left out of a `p_no_gold` share of the records;
    with `quote`, targets quote the gold sentence before the answer."""

    distractors: int = 2
    p_no_gold: float = 0.2
    quote: bool = False


@dataclass(frozen=True)
class SFT:
    """Training records prompted as at test time (with the pipeline's top-k context, if it retrieves)."""


def FineTune(method: str = "lora", records: RAFT | SFT | None = None, **settings: Any) -> FinetuneConfig:  # noqa: N802
    """A fine-tuning spec: the method (lora, ia3, prompt_tuning, full), any `finetune.*`
    setting (learning_rate, epochs, max_steps, ...), and where its records come from
    (default: RAFT where the pipeline retrieves, else SFT)."""
    values: dict[str, Any] = {"method": method, **settings}
    if isinstance(records, RAFT):
        values.update(records="raft", **dataclasses.asdict(records))
    elif isinstance(records, SFT):
        values["records"] = "sft"
    elif records is not None:
        raise InputError(f"FineTune: records must be RAFT(...) or SFT(), got {records!r}")
    return check_settings(FinetuneConfig, values, "finetune", "FineTune")


def LoRA(rank: int = 16, alpha: int = 32, records: RAFT | SFT | None = None, **settings: Any) -> FinetuneConfig:  # noqa: N802
    """LoRA of this rank and alpha; other settings as in `FineTune`."""
    return FineTune("lora", records, rank=rank, alpha=alpha, **settings)


def Synth(**settings: Any) -> SynthConfig:  # noqa: N802
    """How a pipeline with `finetune=LoRA(train_data="synth")` writes its training pairs from
    the training documents: any `synth.*` setting (method, per_chunk, max_chunks, roundtrip, ...)."""
    return check_settings(SynthConfig, settings, "synth", "Synth")


def Prices(  # noqa: N802
    cpu_hour: float = 0.0,
    gpu_hour: float = 0.0,
    million_input_tokens: float = 0.0,
    million_output_tokens: float = 0.0,
) -> PricesConfig:
    """What a pipeline's cost is in dollars: per hour of the machine it runs on (CPU or GPU),
    or, for a generator behind an endpoint, per million tokens it is sent and writes."""
    values = dict(
        cpu_hour=cpu_hour,
        gpu_hour=gpu_hour,
        million_input_tokens=million_input_tokens,
        million_output_tokens=million_output_tokens,
    )
    return check_settings(PricesConfig, values, "prices", "Prices")


def DSPy(  # noqa: N802
    demos: int = 3,
    candidates: int = 4,
    train_questions: int = 60,
    validation_questions: int = 40,
    threshold: float = 0.5,
) -> OptimizeConfig:
    """Prompt optimization with DSPy: up to `demos` solved examples, bootstrapped from
    `train_questions` training questions (an answer scoring `threshold` F1 or more counts)
    or taken from their labels, the best of `candidates` random sets and three fixed ones
    kept by its score on `validation_questions` other training questions."""
    values = dict(
        demos=demos,
        candidates=candidates,
        train_questions=train_questions,
        validation_questions=validation_questions,
        threshold=threshold,
    )
    return check_settings(OptimizeConfig, values, "optimize", "DSPy")
