"""What a QA pipeline fine-tunes on (`finetune.train_data`): the task's train split, a file
of training pairs, pairs synthesized in the run folder from the training documents, or the
feedback `ragft serve` collected. Each source is checked against the test set (no pair from
a document that holds test questions, no feedback on a test question), and each gives the
identity its adapter's key is made of."""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.config import reads_feedback
from ragft.errors import ArtifactError, ConfigError, InputError
from ragft.feedback.records import FeedbackData, feedback_data, served_by
from ragft.feedback.store import FILENAME as FEEDBACK_STORE
from ragft.feedback.store import FeedbackStore
from ragft.finetune.adapter import attached
from ragft.io import read_jsonl, read_manifest, sha256_json, write_manifest
from ragft.keys import synthesis_key
from ragft.models import model_id
from ragft.settings import PipelineSettings
from ragft.synth.synthesize import Synthesis, chunks_identity, held_out_documents, recorded_stats, write_pairs
from ragft.tasks.qa import load_examples
from ragft.types import Chunk, Example

if TYPE_CHECKING:
    from ragft.corpus.loaders import Corpus
    from ragft.generation import Generator
    from ragft.resources import Models


log = logging.getLogger(__name__)


class QaTrainingData:
    """The training data sources of one QA task in a run folder (shared by its pipelines)."""

    def __init__(
        self,
        run: Path,
        corpus: Corpus,
        chunks: Sequence[Chunk],
        train: Sequence[Example],
        test: Sequence[Example],
        models: Models,
    ):
        self.run = run
        self.corpus = corpus
        self.chunks = list(chunks)
        self.train = list(train)
        self.test = list(test)
        self.models = models
        self._train_files: dict[Path, list[Example]] = {}
        self._feedback: dict[tuple[Path, str | None], FeedbackData] = {}

    @cached_property
    def train_sha256(self) -> str:
        return content_hash(self.train)

    def identity(self, pipeline: PipelineSettings) -> Any:
        """What the pipeline's training pairs are, for its adapter's key: the train split's
        content, the synthesis key, the feedback rows' content or the file's content."""
        source = train_data(pipeline)
        if not source:
            return self.train_sha256
        if source == "synth":
            return {"synth": self.synth_key(pipeline)}
        if reads_feedback(source):
            rows = self.feedback(pipeline).rows(pipeline.finetune.objective)
            return {"feedback": sha256_json([asdict(r) for r in rows])}
        return content_hash(self.train_file(pipeline))

    def examples(self, pipeline: PipelineSettings, generator: Generator) -> list[Example]:
        """What the pipeline fine-tunes on (`finetune.train_data`), synthesized first where it
        writes its own pairs."""
        source = train_data(pipeline)
        if not source:
            return self.train
        if source == "synth":
            return self.synthesized(pipeline, generator).examples()
        if reads_feedback(source):
            raise ConfigError(f"pipeline {pipeline.name!r}: feedback trains from the prompts it was served with")
        return self.train_file(pipeline)

    def record(self, pipeline: PipelineSettings) -> dict[str, Any] | None:
        """What made a pipeline's synthetic training pairs (None: human pairs, feedback, or a
        file without a synthesis record)."""
        source = train_data(pipeline)
        if not source or reads_feedback(source):
            return None
        path = self.synth_pairs(pipeline) if source == "synth" else pipeline.path(source)
        return recorded_stats(path) if path.is_file() else None

    # Feedback.

    def feedback(self, pipeline: PipelineSettings) -> FeedbackData:
        """The feedback `finetune.train_data` names (this run folder's store, or a feedback.sqlite
        file) on the answers of the pipeline this one starts from (without one: on every other
        pipeline's answers). Exchanges asking a test question are left out (and counted)."""
        source = pipeline.finetune.train_data
        path = self.run / FEEDBACK_STORE if source == "feedback" else pipeline.path(source)
        served = pipeline.finetune.init_from
        whose = served or f"all but {pipeline.name}"  # the answers the filter below keeps
        if (path, whose) not in self._feedback:
            if not path.is_file():
                raise ConfigError(
                    f"pipeline {pipeline.name!r}: finetune.train_data: {path} is not a feedback store "
                    "(`ragft serve` on the run folder collects feedback there)",
                    pipeline.source or None,
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

    def preference_rows(self, pipeline: PipelineSettings) -> list[dict[str, Any]]:
        """DPO or KTO rows from the feedback (`finetune.objective`)."""
        rows = self.feedback(pipeline).rows(pipeline.finetune.objective)
        if not rows:
            raise InputError(
                f"pipeline {pipeline.name!r}: no {pipeline.finetune.objective} records in the feedback"
                f"{on_answers(pipeline)} (dpo needs corrected answers, kto ratings): collect more first"
            )
        return [asdict(r) for r in rows]

    # A file of training pairs.

    @cached_property
    def held_out(self) -> set[str]:
        """Documents that hold test questions: never a source of training pairs."""
        return held_out_documents(self.corpus, self.test)

    def train_file(self, pipeline: PipelineSettings) -> list[Example]:
        """The `train` rows of a `finetune.train_data` examples file, refused where one comes
        from a document that holds test questions."""
        path = pipeline.path(pipeline.finetune.train_data)
        if path not in self._train_files:  # read for every stage key: once
            self._train_files[path] = self._read_train_file(pipeline, path)
        return self._train_files[path]

    def _read_train_file(self, pipeline: PipelineSettings, path: Path) -> list[Example]:
        if not path.is_file():
            raise ConfigError(
                f"pipeline {pipeline.name!r}: finetune.train_data: {path} is not a file (name a QA JSONL of "
                "training pairs, or 'synth' to write them from the training documents)",
                pipeline.source or None,
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

    # Pairs synthesized in the run folder.

    @cached_property
    def synth_chunks(self) -> list[Chunk]:
        """The chunks pairs are written from: those of documents without test questions."""
        return [c for c in self.chunks if c.doc_id not in self.held_out]

    @cached_property
    def synth_chunks_sha256(self) -> str:
        return chunks_identity(self.synth_chunks)

    def synth_key(self, pipeline: PipelineSettings) -> str:
        """The key of a pipeline's synthetic pairs (`ragft.keys.synthesis_key`): keyed by its
        checker's adapter where another pipeline asks the round trips (`synth.checker`)."""
        c = pipeline
        m = self.models.settings
        embedder = [model_id(m.embedder), m.embedder_dtype]
        decoding = [c.generation.batch_size, c.generation.max_new_tokens]
        generator = self.writer(pipeline).generator_identity()
        checker = c.checker.key if c.checker is not None else None
        return synthesis_key(self.synth_chunks_sha256, generator, decoding, embedder, c.synth, c.seed, checker)

    def writer(self, pipeline: PipelineSettings) -> Models:
        """The models that write a pipeline's synthetic pairs: `synth.generator` (local, in the
        pipeline's dtype and device) where one is named, else the pipeline's own."""
        name = pipeline.synth.generator
        if not name:
            return self.models
        settings = dataclasses.replace(self.models.settings, generator=name, endpoint="")
        return dataclasses.replace(self.models, settings=settings)

    def synth_pairs(self, pipeline: PipelineSettings) -> Path:
        """Where a pipeline's synthetic pairs live in the run folder: one folder per key."""
        return self.run / "synth" / self.synth_key(pipeline)[:12] / "train.jsonl"

    def synthesized(self, pipeline: PipelineSettings, generator: Generator) -> Synthesis:
        """Pairs written from the training documents with the pipeline's `[synth]` settings,
        kept in the run folder by their key (a killed synthesis continues from its journal).
        A checker's adapter (`pipeline.checker`, trained by the runner before it asks) goes on
        `generator` for the round trips."""
        key, pairs = self.synth_key(pipeline), self.synth_pairs(pipeline)
        try:
            stats = recorded_stats(pairs)
            if stats is not None and read_manifest(pairs.parent, "synthetic-pairs").get("fingerprint") == key:
                return Synthesis([row for _, row in read_jsonl(pairs)], stats)
        except (ArtifactError, InputError):
            pass
        c = pipeline
        checker = None
        if c.checker is not None:  # with synth.roundtrip on (settings.check_checkers)
            folder, base, checked = c.checker.folder, model_id(c.models.generator), c.checker.key
            checker = lambda: attached(generator, folder, base, checked)  # noqa: E731
        writer = self.writer(pipeline).generator_once() if c.synth.generator and c.synth.writer_runs else generator
        try:
            result = write_pairs(
                pairs,
                self.synth_chunks,
                writer,
                self.models.embedder(),
                c.synth,
                key=key,
                seed=c.seed,
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


def train_data(pipeline: PipelineSettings) -> str:
    """A trained pipeline's `finetune.train_data` (prompt optimization reads the train split)."""
    return pipeline.finetune.train_data if pipeline.trained else ""


def on_answers(pipeline: PipelineSettings) -> str:
    served = pipeline.finetune.init_from
    return f" on {served!r}'s answers" if served else ""


def content_hash(examples: Sequence[Example]) -> str:
    """Content hash of examples: what a stage reading them sees (ids, questions, answers, documents)."""
    return sha256_json([[e.id, e.question, list(e.answers), e.split, e.doc_id] for e in examples])
