"""Question answering over a corpus as an experiment task: corpus, index, retriever,
examples; prompts with retrieved passages; SQuAD EM and F1; SFT and RAFT training records."""

from __future__ import annotations

import dataclasses
import gc
import logging
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ragft.config import reads_feedback
from ragft.corpus.chunking import chunk_for_embedder
from ragft.errors import ArtifactError, ConfigError, InputError
from ragft.feedback.records import FeedbackData, feedback_data, served_by
from ragft.feedback.store import FILENAME as FEEDBACK_STORE
from ragft.feedback.store import FeedbackStore
from ragft.finetune.data import SFTRecord, gold_chunk, make_record, quoted_answer, raft_passages
from ragft.io import append_jsonl, read_jsonl, read_manifest, sha256_json, write_manifest
from ragft.keys import hits_key
from ragft.metrics import QA_SCORING, normalize_answer, qa_scores, recall_at_k
from ragft.models import model_id
from ragft.optimize import Question
from ragft.retrieval import DenseRetriever, Retriever, VectorIndex
from ragft.retrieval.build import sync_index
from ragft.retrieval.compose import QuerySide, make_retriever
from ragft.retrieval.index import IndexSettings, choose_kind, corpus_hash
from ragft.settings import Arm
from ragft.synth.synthesize import (
    Synthesis,
    chunks_identity,
    fingerprint,
    held_out_documents,
    recorded_stats,
    write_pairs,
)
from ragft.tasks.qa import QATask, build_prompt, load_examples
from ragft.types import Chunk, Example, Hit

if TYPE_CHECKING:
    from ragft.config import ChunkingConfig, RetrievalConfig
    from ragft.generation import Generator
    from ragft.resources import Models


log = logging.getLogger(__name__)


class PipelineAdapters(Protocol):
    """The experiment's fine-tuned pipelines by name: what a synthesis checked by one of them
    (`synth.checker`) is keyed by and asks its round trips with."""

    def pipeline_adapter_key(self, name: str) -> str: ...

    def pipeline_adapted(self, name: str, generator: Generator) -> AbstractContextManager[Generator]: ...


class QaRun:
    """A QA task prepared for one run folder and one retrieval setup (a pipeline's chunking,
    embedder and retrieval settings): the index and test passages are built on first use
    and cached there, so planning a run's keys loads no model."""

    metrics = ("f1", "em", "acc")
    oracle = "the passage of the question's document that holds its answer"

    def __init__(
        self,
        run: Path,
        task: QATask,
        chunking: ChunkingConfig,
        retrieval: RetrievalConfig,
        models: Models,
        adapters: PipelineAdapters,
    ):
        c = chunking
        self.run = run
        self.chunking = chunking
        self.retrieval_settings = retrieval
        self.models = models
        self.corpus = task.corpus
        self.chunks = chunk_for_embedder(self.corpus, models.settings.embedder, c.unit, c.chunk_size, c.chunk_overlap)
        self.train = list(task.train)
        self.test = list(task.test)
        self.test_ids = [e.id for e in self.test]
        self._train_files: dict[Path, list[Example]] = {}
        self._feedback: dict[tuple[Path, str | None], FeedbackData] = {}
        self.adapters = adapters
        """The run's other pipelines' adapters, for `synth.checker`."""

    # Identities: what each stage's key is made of (see ragft.keys).

    @cached_property
    def chunks_sha256(self) -> str:
        return corpus_hash(self.chunks)

    @cached_property
    def train_sha256(self) -> str:
        return _content(self.train)

    @cached_property
    def test_sha256(self) -> str:
        return _content(self.test)

    def _index_settings(self) -> dict[str, Any]:
        """The embedder and index settings a dense search reads (the index kind resolved by size)."""
        m, r = self.models.settings, self.retrieval_settings
        kind = choose_kind(r.index, len(self.chunks))
        settings = {"hnsw": ("hnsw_m", "ef_construction", "ef_search"), "ivf": ("nprobe",), "ivfpq": ("nprobe",)}
        return {
            "embedder": model_id(m.embedder),
            "embedder_dtype": m.embedder_dtype,
            "index": kind,
            **{name: getattr(r, name) for name in settings.get(kind, ())},
        }

    def index_identity(self) -> Any:
        if self.retrieval_settings.method == "bm25":
            return None  # BM25 alone searches no vector index
        return {"chunks": self.chunks_sha256, **self._index_settings()}

    def retriever_identity(self) -> Any:
        r = self.retrieval_settings
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

    def training_identity(self, pipeline: Arm) -> Any:
        source = _train_data(pipeline)
        if not source:
            train: Any = self.train_sha256
        elif source == "synth":
            train = {"synth": self.synth_key(pipeline)}
        elif reads_feedback(source):
            rows = self.feedback(pipeline).rows(_feedback_kind(pipeline))
            train = {"feedback": sha256_json([asdict(r) for r in rows])}
        else:
            train = _content(self.train_file(pipeline))
        out: dict[str, Any] = {"train": train, "context": pipeline.context}
        if pipeline.context:
            out["held_out"] = sorted({e.doc_id for e in self.test if e.doc_id})
            out["retriever"] = self.retriever_identity()
            if not pipeline.raft:
                out["k"] = self.retrieval_settings.k
        return out

    def prompt_identity(self, pipeline: Arm) -> Any:
        return {"test": self.test_sha256, "shots": _content(self.train[: pipeline.shots])}

    def scoring_identity(self) -> Any:
        return {"score": QA_SCORING}

    # Training examples: the task's train split, a file of pairs, pairs written in the run, or feedback.

    def training_examples(self, pipeline: Arm, generator: Generator) -> list[Example]:
        """What the pipeline fine-tunes on (`finetune.train_data`)."""
        source = _train_data(pipeline)
        if not source:
            return self.train
        if source == "synth":
            return self.synthesized(pipeline, generator).examples()
        if reads_feedback(source):
            raise ConfigError(f"pipeline {pipeline.name!r}: feedback trains from the prompts it was served with")
        return self.train_file(pipeline)

    def feedback(self, pipeline: Arm) -> FeedbackData:
        """The feedback `finetune.train_data` names (this run folder's store, or a feedback.sqlite
        file) on the answers of the pipeline this one starts from (without one: on every other
        pipeline's answers). Exchanges asking a test question are left out (and counted)."""
        c = pipeline.config
        source = c.finetune.train_data
        path = self.run / FEEDBACK_STORE if source == "feedback" else c.path(source)
        served = c.finetune.init_from
        whose = served or f"all but {pipeline.name}"  # the answers the filter below keeps
        if (path, whose) not in self._feedback:
            if not path.is_file():
                raise ConfigError(
                    f"pipeline {pipeline.name!r}: finetune.train_data: {path} is not a feedback store "
                    "(`ragft serve` on the run folder collects feedback there)",
                    c.source or None,
                )
            keep = served_by(served) if served else (lambda x: x.model == x.pipeline != pipeline.name)
            with FeedbackStore(path) as store:
                data = feedback_data(store, keep, [e.question for e in self.test])
            if data.left_out:
                log.warning(
                    "%s: %d exchanges with feedback ask test questions; left out of pipeline %r's training "
                    "(training on them would leak the test set)",
                    path,
                    data.left_out,
                    pipeline.name,
                )
            self._feedback[(path, whose)] = data
        return self._feedback[(path, whose)]

    def preference_rows(self, pipeline: Arm) -> list[dict[str, Any]]:
        rows = self.feedback(pipeline).rows(_feedback_kind(pipeline))
        if not rows:
            raise InputError(
                f"pipeline {pipeline.name!r}: no {pipeline.config.finetune.objective} records in the feedback"
                f"{_on_answers(pipeline)} (dpo needs corrected answers, kto ratings): collect more first"
            )
        return [asdict(r) for r in rows]

    @cached_property
    def held_out(self) -> set[str]:
        """Documents that hold test questions: never a source of training pairs."""
        return held_out_documents(self.corpus, self.test)

    def train_file(self, pipeline: Arm) -> list[Example]:
        """The `train` rows of a `finetune.train_data` examples file, refused where one comes
        from a document that holds test questions."""
        path = pipeline.config.path(pipeline.config.finetune.train_data)
        if path not in self._train_files:  # read for every stage key: once
            self._train_files[path] = self._read_train_file(pipeline, path)
        return self._train_files[path]

    def _read_train_file(self, pipeline: Arm, path: Path) -> list[Example]:
        if not path.is_file():
            raise ConfigError(
                f"pipeline {pipeline.name!r}: finetune.train_data: {path} is not a file (name a QA JSONL of "
                "training pairs, or 'synth' to write them from the training documents)",
                pipeline.config.source or None,
            )
        rows = [e for e in load_examples(path) if e.split == "train"]
        if not rows:
            raise InputError("finetune.train_data: no train examples in the file", path)
        leaked = next((e for e in rows if e.doc_id in self.held_out), None)
        if leaked is not None:
            line = next(n for n, row in read_jsonl(path) if str(row.get("id")) == leaked.id)
            raise InputError(
                f"training pair {leaked.id!r} comes from document {leaked.doc_id!r}, which holds test questions: "
                "training on it leaks the test set (`ragft synth --examples` leaves test documents out)",
                path,
                line,
            )
        return rows

    @cached_property
    def synth_chunks(self) -> list[Chunk]:
        """The chunks pairs are written from: those of documents without test questions."""
        return [c for c in self.chunks if c.doc_id not in self.held_out]

    @cached_property
    def synth_chunks_sha256(self) -> str:
        return chunks_identity(self.synth_chunks)

    def synth_key(self, pipeline: Arm) -> str:
        c = pipeline.config
        m = self.models.settings
        embedder = [model_id(m.embedder), m.embedder_dtype]
        decoding = [c.generation.batch_size, c.generation.max_new_tokens]
        generator = self.writer(pipeline).generator_identity()
        checker = self.adapters.pipeline_adapter_key(c.synth.checker) if c.synth.checker else None
        return fingerprint(self.synth_chunks_sha256, generator, decoding, embedder, c.synth, c.experiment.seed, checker)

    def writer(self, pipeline: Arm) -> Models:
        """The models that write a pipeline's synthetic pairs: `synth.generator` (local, in the
        pipeline's dtype and device) where one is named, else the pipeline's own."""
        name = pipeline.config.synth.generator
        if not name:
            return self.models
        settings = dataclasses.replace(self.models.settings, generator=name, endpoint="")
        return dataclasses.replace(self.models, settings=settings)

    def synth_pairs(self, pipeline: Arm) -> Path:
        """Where a pipeline's synthetic pairs live in the run folder: one folder per key."""
        return self.run / "synth" / self.synth_key(pipeline)[:12] / "train.jsonl"

    def synthesized(self, pipeline: Arm, generator: Generator) -> Synthesis:
        """Pairs written from the training documents with the pipeline's `[synth]` settings,
        kept in the run folder by their key (a killed synthesis continues from its journal)."""
        key, pairs = self.synth_key(pipeline), self.synth_pairs(pipeline)
        try:
            stats = recorded_stats(pairs)
            if stats is not None and read_manifest(pairs.parent, "synthetic-pairs").get("fingerprint") == key:
                return Synthesis([row for _, row in read_jsonl(pairs)], stats)
        except (ArtifactError, InputError):
            pass
        c = pipeline.config
        checker = None
        if c.synth.checker:  # with synth.roundtrip on (arms.check_checkers)
            adapters, name = self.adapters, c.synth.checker
            with adapters.pipeline_adapted(name, generator):
                pass  # trained (or found trained) before any writer loads, then taken off
            checker = lambda: adapters.pipeline_adapted(name, generator)  # noqa: E731
        writer = self.writer(pipeline).generator_once() if c.synth.generator and c.synth.writer_runs else generator
        try:
            result = write_pairs(
                pairs,
                self.synth_chunks,
                writer,
                self.models.embedder(),
                c.synth,
                key=key,
                seed=c.experiment.seed,
                test_questions=[e.question for e in self.test],
                held_out=len(self.held_out),
                checker=checker,
                checker_name=c.synth.checker,
            )
        finally:
            if writer is not generator:  # a named writer's memory goes before the pipeline trains
                del writer
                gc.collect()
        write_manifest(pairs.parent, {"kind": "synthetic-pairs", "fingerprint": key, "settings": asdict(c.synth)})
        return result

    def training_data(self, pipeline: Arm) -> dict[str, Any] | None:
        """What made a pipeline's synthetic training pairs (None: human pairs, or a file
        without a synthesis record)."""
        source = _train_data(pipeline)
        if source == "synth":
            path = self.synth_pairs(pipeline)
        elif reads_feedback(source):
            return None
        elif source:
            path = pipeline.config.path(source)
        else:
            return None
        return recorded_stats(path) if path.is_file() else None

    # Retrieval, built on first use.

    @property
    def index_folder(self) -> Path:
        """One folder per embedder, embedder dtype and index kind: what the stored vectors and
        the index structure depend on (other settings are applied to it in place, no embedding)."""
        s = self._index_settings()
        return self.run / "index" / sha256_json([s["embedder"], s["embedder_dtype"], s["index"]])[:12]

    @cached_property
    def index(self) -> VectorIndex:
        """The vector index, synced in `index_folder` (a changed corpus re-embeds only its
        changed chunks), or the one passed in that holds these chunks."""
        settings = self._index_settings()
        r = self.retrieval_settings
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
        r = self.retrieval_settings
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
        key = hits_key(self, self.retrieval_settings.k)
        path = self.run / "retrieval" / "test_hits.jsonl"
        by_id = {c.id: c for c in self.chunks}
        return _test_hits(path, self.test, by_id, lambda: self.retriever, key, self.retrieval_settings.k)

    def context(self, pipeline: Arm, i: int) -> list[Chunk]:
        """The passages test example i is shown: retrieved, the gold one (oracle), or none."""
        if not pipeline.context:
            return []
        if pipeline.oracle:
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

    def prompts(self, pipeline: Arm, generator: Generator) -> list[str]:
        shots = self.train[: pipeline.shots]
        return [
            build_prompt(generator, pipeline, e, [c.text for c in self.context(pipeline, i)], shots)
            for i, e in enumerate(self.test)
        ]

    def answers(self, i: int) -> tuple[str, ...]:
        return self.test[i].answers

    def groups(self) -> tuple[dict[str, str], str]:
        by = "group" if any(e.group for e in self.test) else "document"
        return {e.id: e.group or e.doc_id or e.id for e in self.test}, by

    def train_answers(self) -> list[tuple[str, str]]:
        return [(normalize_answer(e.answers[0]), e.answers[0]) for e in self.train]

    def retrieved(self, pipeline: Arm, i: int) -> tuple[str, ...]:
        return tuple(c.id for c in self.context(pipeline, i))

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        return qa_scores(output, self.test[i].answers), ""

    def primary_score(self, output: str, answers: tuple[str, ...]) -> float:
        """The primary metric (F1) of an output against gold answers: what prompt optimization maximises."""
        return qa_scores(output, answers)[self.metrics[0]]

    def train_records(self, pipeline: Arm, generator: Generator) -> list[SFTRecord]:
        """SFT records. A retrieving pipeline's prompts carry context from its own retriever:
        RAFT (the gold passage among distractors, sometimes left out) or, with
        `finetune.records = "sft"`, the top k as at test time.

        Passages from the test examples' documents are kept out of training prompts.
        """
        ft = pipeline.config.finetune
        eos = generator.tokenizer.eos_token_id
        if reads_feedback(_train_data(pipeline)):  # the prompt the model was served, the corrected answer
            rows = self.feedback(pipeline).sft
            if not rows:
                raise InputError(
                    f"pipeline {pipeline.name!r}: no corrected answers in the feedback{_on_answers(pipeline)} "
                    "to train on"
                )
            return [
                make_record(r.id, generator.encode(r.prompt), generator.encode(r.answer), eos, ft.max_length)
                for r in rows
            ]
        rng = random.Random(pipeline.config.experiment.seed)
        n_passages = ft.distractors + 1 if pipeline.raft else self.retrieval_settings.k
        train = self.training_examples(pipeline, generator)
        hits = self._train_hits(pipeline, train, n_passages)
        records = []
        for e, row in zip(train, hits):
            passages, target = [h.chunk.text for h in row[:n_passages]], e.answers[0]
            if pipeline.raft:
                gold = gold_chunk(e, self.chunks_by_doc)
                shown = raft_passages(e, row, gold, n_passages, ft.p_no_gold, rng)
                passages = [c.text for c in shown]
                if ft.quote:
                    target = quoted_answer(gold.text if gold in shown else None, e.answers[0])
            prompt = build_prompt(generator, pipeline, e, passages, [])
            answer = generator.encode(target)
            records.append(make_record(e.id, generator.encode(prompt), answer, eos, ft.max_length))
        return records

    def _train_hits(self, pipeline: Arm, examples: Sequence[Example], n: int) -> list[list[Hit]]:
        """Retrieved passages for training questions (none where the pipeline retrieves
        nothing), leaving out the test examples' documents; at least n where there are."""
        if not pipeline.context:
            return [[] for _ in examples]
        held_out = {e.doc_id for e in self.test if e.doc_id}
        raw = self.retriever.retrieve([e.question for e in examples], n + 8)
        return [[h for h in row if h.chunk.doc_id not in held_out] for row in raw]

    def optimizer_questions(self, pipeline: Arm) -> tuple[list[Question], list[Question]]:
        """Training questions for prompt optimization, shown the top k passages as at test
        time: a seeded draw of `optimize.train_questions` to bootstrap from and
        `optimize.validation_questions` others to score candidate prompts on."""
        o, k = pipeline.config.optimize, self.retrieval_settings.k
        order = list(self.train)
        random.Random(pipeline.config.experiment.seed).shuffle(order)
        n_val = min(o.validation_questions, len(order) // 2)
        chosen = order[: n_val + o.train_questions]
        hits = self._train_hits(pipeline, chosen, k)
        questions = [
            Question(e.question, e.answers, tuple(h.chunk.text for h in row[:k])) for e, row in zip(chosen, hits)
        ]
        return questions[n_val:], questions[:n_val]

    def prepare(self, pipeline: Arm) -> None:
        if pipeline.context and self.index_identity() is not None:
            self.index  # noqa: B018 (built and saved)

    def summary(self, retrieves: bool = True) -> dict[str, Any]:
        k = self.retrieval_settings.k
        out: dict[str, Any] = {}
        if retrieves and (self.retrieval_settings.method != "bm25" or "test_hits" in self.__dict__):
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

    def passages(self) -> dict[str, str]:
        return {c.id: c.text for c in self.chunks}


def _train_data(pipeline: Arm) -> str:
    """A trained pipeline's `finetune.train_data` (prompt optimization reads the train split)."""
    return pipeline.config.finetune.train_data if pipeline.trained else ""


def _on_answers(pipeline: Arm) -> str:
    served = pipeline.config.finetune.init_from
    return f" on {served!r}'s answers" if served else ""


def _feedback_kind(pipeline: Arm) -> str:
    """Which of a feedback store's record sets the pipeline trains on."""
    return pipeline.config.finetune.objective  # sft, dpo or kto


def _content(examples: Sequence[Example]) -> str:
    """Content hash of examples: what a stage reading them sees (ids, questions, answers, documents)."""
    return sha256_json([[e.id, e.question, list(e.answers), e.split, e.doc_id] for e in examples])


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
