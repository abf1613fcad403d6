"""Question answering over a corpus as an experiment task: what the runner asks of a QA task
prepared for one run folder and one retrieval setup. It composes the retrieval
(`QaRetrieval`: chunks, index, retriever, test passages) and the training data sources
(`QaTrainingData`), and builds prompts, SQuAD scores, SFT and RAFT training records and the
questions prompt optimization searches on."""

from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.config import reads_feedback
from ragft.errors import InputError
from ragft.finetune.data import SFTRecord, gold_chunk, make_record, quoted_answer, raft_passages
from ragft.metrics import QA_SCORING, normalize_answer, qa_scores
from ragft.optimize import Question
from ragft.settings import PipelineSettings
from ragft.tasks.qa import QATask, build_prompt
from ragft.tasks.qa_retrieval import QaRetrieval
from ragft.tasks.qa_training import QaTrainingData, content_hash, on_answers, train_data
from ragft.types import Chunk, Example, Hit

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ragft.config import ChunkingConfig, RetrievalConfig
    from ragft.generation import Generator
    from ragft.resources import Models


class QaRun:
    """A QA task prepared for one run folder and one retrieval setup (a pipeline's chunking,
    embedder and retrieval settings): the index and test passages are built on first use
    and cached there, so planning a run's keys loads no model."""

    metrics = ("f1", "em", "acc")
    oracle = "the passage of the question's document that holds its answer"

    def __init__(self, run: Path, task: QATask, chunking: ChunkingConfig, retrieval: RetrievalConfig, models: Models):
        self.train = list(task.train)
        self.test = list(task.test)
        self.test_ids = [e.id for e in self.test]
        self.retrieval = QaRetrieval(run, task.corpus, self.test, chunking, retrieval, models)
        self.data = QaTrainingData(run, task.corpus, self.retrieval.chunks, self.train, self.test, models)

    @property
    def k(self) -> int:
        """Passages a retrieving pipeline is shown."""
        return self.retrieval.settings.k

    # Identities: what each stage's key is made of (see ragft.keys).

    @cached_property
    def test_sha256(self) -> str:
        return content_hash(self.test)

    def index_identity(self) -> Any:
        return self.retrieval.index_identity()

    def retriever_identity(self) -> Any:
        return self.retrieval.retriever_identity()

    def oracle_identity(self) -> Any:
        return self.retrieval.oracle_identity()

    def training_identity(self, pipeline: PipelineSettings) -> Any:
        out: dict[str, Any] = {"train": self.data.identity(pipeline), "context": pipeline.context}
        if pipeline.context:
            out["held_out"] = sorted(self.retrieval.test_documents)
            out["retriever"] = self.retriever_identity()
            if not pipeline.raft:
                out["k"] = self.k
        return out

    def prompt_identity(self, pipeline: PipelineSettings) -> Any:
        return {"test": self.test_sha256, "shots": content_hash(self.train[: pipeline.shots])}

    def scoring_identity(self) -> Any:
        return {"score": QA_SCORING}

    # Test prompts and scores.

    def context(self, pipeline: PipelineSettings, i: int) -> list[Chunk]:
        """The passages test example i is shown: retrieved, the gold one (oracle), or none."""
        if not pipeline.context:
            return []
        if pipeline.oracle:
            gold = self.retrieval.gold_chunks[i]
            return [gold] if gold is not None else []
        return [h.chunk for h in self.retrieval.test_hits[i]]

    def prompts(self, pipeline: PipelineSettings, generator: Generator) -> list[str]:
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

    def retrieved(self, pipeline: PipelineSettings, i: int) -> tuple[str, ...]:
        return tuple(c.id for c in self.context(pipeline, i))

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        return qa_scores(output, self.test[i].answers), ""

    def primary_score(self, output: str, answers: tuple[str, ...]) -> float:
        """The primary metric (F1) of an output against gold answers: what prompt optimization maximises."""
        return qa_scores(output, answers)[self.metrics[0]]

    # Training.

    def train_records(self, pipeline: PipelineSettings, generator: Generator) -> list[SFTRecord]:
        """SFT records. A retrieving pipeline's prompts carry context from its own retriever:
        RAFT (the gold passage among distractors, sometimes left out) or, with
        `finetune.records = "sft"`, the top k as at test time.

        Passages from the test examples' documents are kept out of training prompts.
        """
        ft = pipeline.finetune
        eos = generator.tokenizer.eos_token_id
        if reads_feedback(train_data(pipeline)):  # the prompt the model was served, the corrected answer
            rows = self.data.feedback(pipeline).sft
            if not rows:
                raise InputError(
                    f"pipeline {pipeline.name!r}: no corrected answers in the feedback{on_answers(pipeline)} "
                    "to train on"
                )
            return [
                make_record(r.id, generator.encode(r.prompt), generator.encode(r.answer), eos, ft.max_length)
                for r in rows
            ]
        rng = random.Random(pipeline.seed)
        n_passages = ft.distractors + 1 if pipeline.raft else self.k
        train = self.data.examples(pipeline, generator)
        hits = self._training_hits(pipeline, train, n_passages)
        records = []
        for e, row in zip(train, hits):
            passages, target = [h.chunk.text for h in row[:n_passages]], e.answers[0]
            if pipeline.raft:
                gold = gold_chunk(e, self.retrieval.chunks_by_doc)
                shown = raft_passages(e, row, gold, n_passages, ft.p_no_gold, rng)
                passages = [c.text for c in shown]
                if ft.quote:
                    target = quoted_answer(gold.text if gold in shown else None, e.answers[0])
            prompt = build_prompt(generator, pipeline, e, passages, [])
            answer = generator.encode(target)
            records.append(make_record(e.id, generator.encode(prompt), answer, eos, ft.max_length))
        return records

    def preference_rows(self, pipeline: PipelineSettings) -> list[dict[str, Any]]:
        return self.data.preference_rows(pipeline)

    def training_data(self, pipeline: PipelineSettings) -> dict[str, Any] | None:
        return self.data.record(pipeline)

    def _training_hits(self, pipeline: PipelineSettings, examples: Sequence[Example], n: int) -> list[list[Hit]]:
        """Retrieved passages for training questions (none where the pipeline retrieves nothing)."""
        if not pipeline.context:
            return [[] for _ in examples]
        return self.retrieval.training_hits(examples, n)

    def optimizer_questions(self, pipeline: PipelineSettings) -> tuple[list[Question], list[Question]]:
        """Training questions for prompt optimization, shown the top k passages as at test
        time: a seeded draw of `optimize.train_questions` to bootstrap from and
        `optimize.validation_questions` others to score candidate prompts on."""
        o, k = pipeline.optimize, self.k
        order = list(self.train)
        random.Random(pipeline.seed).shuffle(order)
        n_val = min(o.validation_questions, len(order) // 2)
        chosen = order[: n_val + o.train_questions]
        hits = self._training_hits(pipeline, chosen, k)
        questions = [
            Question(e.question, e.answers, tuple(h.chunk.text for h in row[:k])) for e, row in zip(chosen, hits)
        ]
        return questions[n_val:], questions[:n_val]

    # The run folder and the report.

    def prepare(self, pipeline: PipelineSettings) -> None:
        if pipeline.context:
            self.retrieval.prepare()

    def summary(self, retrieves: bool = True) -> dict[str, Any]:
        return self.retrieval.summary(retrieves)

    def passages(self) -> dict[str, str]:
        return {c.id: c.text for c in self.retrieval.chunks}
