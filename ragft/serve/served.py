"""One pipeline of a finished run, loaded to answer new questions as it answered the test
questions: the same retriever over the same index, the same template and solved examples
(or optimized demonstrations), the same generator with its adapter on.

Nothing is trained or optimized here: a pipeline whose adapter or prompt the run folder
does not hold for its current inputs is refused, naming the command that makes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ArtifactError, InputError
from ragft.feedback.store import Passage
from ragft.io import read_json
from ragft.runner.folder import run_config, run_pipeline
from ragft.settings import PipelineSettings
from ragft.tasks.qa import build_prompt
from ragft.types import Example

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.retrieval import Embedder, Retriever
    from ragft.tasks.qa import QATask

CHAT_SUFFIX = ":chat"
"""A served pipeline's second model id: its generator (with the adapter) answering the
messages as sent, without retrieval or template, as any chat endpoint would."""


@dataclass(frozen=True)
class Request:
    """One chat completion to make: the model id asked for, the messages, the token budget."""

    model: str
    messages: tuple[tuple[str, str], ...]
    """(role, content) pairs; the pipeline model answers the last user message."""
    max_new_tokens: int


@dataclass(frozen=True)
class Answer:
    """What the model said, and everything it was shown to say it."""

    question: str
    passages: tuple[Passage, ...]
    prompt: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """"stop" (the model ended its answer) or "length" (it ran out of tokens)."""
    top_score: float | None = None
    """The retriever's score of the first passage (None where nothing was retrieved)."""


def question_of(messages: Sequence[tuple[str, str]]) -> str:
    """The question a pipeline answers: the last user message."""
    for role, content in reversed(messages):
        if role == "user":
            return content
    raise InputError("the messages hold no user message to answer")


class ServedPipeline:
    """A run's pipeline answering requests in batches (`answer`); `close` takes its adapter
    off a generator that was passed in."""

    def __init__(
        self,
        pipeline: PipelineSettings,
        generator: Generator,
        retriever: Retriever | None,
        shots: Sequence[Example],
        base_model: Any,
        embedder: Callable[[], Embedder] | None = None,
        data: QATask | None = None,
    ):
        self.pipeline = pipeline
        self.name = pipeline.name
        self.generator = generator
        self.retriever = retriever
        self.shots = list(shots)
        self.k = pipeline.retrieval.k
        self._base_model = base_model
        self._embedder = embedder
        self.data = data
        """The run's task: its documents, training and test questions."""

    def embedder(self) -> Embedder | None:
        """The pipeline's embedder (loaded on first use; None where it was not given)."""
        return self._embedder() if self._embedder is not None else None

    @property
    def model_ids(self) -> tuple[str, str]:
        return self.name, self.name + CHAT_SUFFIX

    @property
    def max_new_tokens(self) -> int:
        return self.pipeline.generation.max_new_tokens

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        name: str,
        generator: Generator | None = None,
        embedder: Embedder | None = None,
    ) -> ServedPipeline:
        """Pipeline `name` of the run in `run_dir`, with its models (the `generator` and
        `embedder` given, where their names match the pipeline's settings)."""
        from ragft.resources import Resources
        from ragft.runner.run import Run

        folder = Path(run_dir)
        config = run_config(folder)
        if config.data.kind != "qa":
            raise InputError(f"ragft serve answers questions; this run's task is {config.data.kind!r}", folder)
        pipeline = run_pipeline(folder, config, name)
        pipelines = [run_pipeline(folder, config, n) for n in read_json(folder / "pipelines.json")]
        resources = Resources([generator] if generator else [], [embedder] if embedder else [])
        run = Run(folder, config, resources, pipelines=pipelines)
        task = run.task(pipeline)
        keys = run.keys(pipeline)
        gen = run.generator(pipeline)
        base = gen.model
        if pipeline.trained:
            assert keys.adapter is not None
            gen.model = _adapter(folder, pipeline, gen, keys.adapter)
        if pipeline.optimized:
            assert keys.prompt is not None
            pipeline = pipeline.with_demos(_optimized_demos(folder, pipeline, keys.prompt))
        retriever = task.retrieval.retriever if pipeline.context else None  # type: ignore[attr-defined]
        shots = task.train[: pipeline.shots]  # type: ignore[attr-defined]
        return cls(pipeline, gen, retriever, shots, base, run.models(pipeline).embedder, run.data)

    def close(self) -> None:
        """Take the adapter off (the generator's model is as it was given)."""
        if self.generator.model is not self._base_model:
            from ragft.finetune.detach import detach_adapter

            self.generator.model = detach_adapter(self.generator.model)

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """Answers to a batch of requests (pipeline and chat models mixed), in order."""
        if not requests:
            return []
        questions = [question_of(r.messages) if r.model == self.name else "" for r in requests]
        asked = [i for i, r in enumerate(requests) if r.model == self.name]
        passages: dict[int, tuple[Passage, ...]] = {i: () for i in range(len(requests))}
        top: dict[int, float] = {}
        if self.retriever is not None and asked:
            hits = self.retriever.retrieve([questions[i] for i in asked], self.k)
            for i, row in zip(asked, hits):
                passages[i] = tuple(Passage(h.chunk.id, h.chunk.text) for h in row)
                if row:
                    top[i] = float(row[0].score)
        prompts = [self._prompt(r, questions[i], passages[i]) for i, r in enumerate(requests)]
        by_budget: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            by_budget[r.max_new_tokens].append(i)
        out: dict[int, Answer] = {}
        for budget, batch in by_budget.items():
            for i, g in zip(batch, self.generator.generate_batch([prompts[i] for i in batch], budget)):
                question = questions[i] or question_of(requests[i].messages)
                finish = "length" if g.completion_tokens >= budget else "stop"
                out[i] = Answer(
                    question, passages[i], prompts[i], g.text, g.prompt_tokens, g.completion_tokens, finish, top.get(i)
                )
        return [out[i] for i in range(len(requests))]

    def _prompt(self, request: Request, question: str, passages: tuple[Passage, ...]) -> str:
        if request.model != self.name:  # the chat model: the messages as sent
            return self.generator.render([{"role": role, "content": text} for role, text in request.messages])
        example = Example("served", question, (), "test")
        return build_prompt(self.generator, self.pipeline, example, [p.text for p in passages], self.shots)


def _adapter(folder: Path, pipeline: PipelineSettings, generator: Generator, key: str) -> Any:
    from ragft.finetune.adapter import load_adapter
    from ragft.models import model_id
    from ragft.runner.training import adapter_dir, has_adapter

    path = adapter_dir(folder, pipeline.name)
    if not has_adapter(path, key):
        there = (path / "manifest.json").is_file()
        state = "an adapter trained on other inputs than the run's now" if there else "no trained adapter"
        raise ArtifactError(
            f"pipeline {pipeline.name!r}: {path} holds {state} (data files or settings changed since?); "
            "`ragft compare` of the run's config trains it, then serve again"
        )
    return load_adapter(generator.model, path, model_id(pipeline.models.generator))


def _optimized_demos(folder: Path, pipeline: PipelineSettings, key: str) -> Any:
    from ragft.io import read_manifest
    from ragft.optimize import OptimizedPrompt, prompt_dir

    path = prompt_dir(folder, pipeline.name)
    try:
        fingerprint = read_manifest(path, "optimized-prompt").get("fingerprint")
    except ArtifactError:
        fingerprint = None
    if fingerprint != key:
        raise ArtifactError(
            f"pipeline {pipeline.name!r}: {path} holds no prompt optimized for the run's current inputs; "
            "`ragft compare` of the run's config optimizes it (then serve again)"
        )
    return OptimizedPrompt.from_dict(read_json(path / "prompt.json")).demos
