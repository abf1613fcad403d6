"""Prompt optimization with DSPy: the solved examples a pipeline's prompt shows, chosen on
the training split by DSPy's BootstrapFewShotWithRandomSearch with the pipeline's own
generator, template and metric, in process (no server, no network).

ragft's generator is wrapped as a DSPy language model (an engine DSPy calls with each
request), and an adapter formats DSPy's calls with the pipeline's own prompt template, so
the prompt DSPy scores is the prompt the pipeline shows at test time. The generator
decodes greedily here as in every pipeline; DSPy's cache is off, so calls, tokens and seconds
are what the optimization cost.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ArtifactError, InputError, RagftError
from ragft.io import atomic_dir, library_versions, read_json, read_manifest, write_json_atomic, write_manifest
from ragft.progress import progress
from ragft.types import Demo

if TYPE_CHECKING:
    from ragft.config import OptimizeConfig
    from ragft.generation import Generator
    from ragft.prompts import PromptTemplate


@dataclass(frozen=True)
class Question:
    """A training question the optimizer may use: its gold answers and the passages it is shown."""

    question: str
    answers: tuple[str, ...]
    passages: tuple[str, ...] = ()


@dataclass(frozen=True)
class OptimizedPrompt:
    """What the optimizer chose, what the chosen prompt scored on the validation questions,
    and what the search cost."""

    demos: tuple[Demo, ...]
    validation_score: float
    """Mean primary metric (0-1) of the chosen prompt on the validation questions."""
    candidates: int
    """Prompts scored (zero-shot, labels only, plain bootstrap, and the random candidates)."""
    calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizedPrompt:
        demos = tuple(Demo(d["question"], d["answer"], tuple(d.get("passages", ()))) for d in data["demos"])
        return cls(demos, **{k: v for k, v in data.items() if k != "demos"})


class _Engine:
    """ragft's generator behind DSPy's engine interface (`complete(Request) -> Response`),
    counting calls, tokens and seconds."""

    def __init__(self, generator: Generator, bar: Any = None):
        self.generator = generator
        self.bar = bar
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.seconds = 0.0

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append({"role": "system", "content": system})
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        start = time.perf_counter()
        g = self.generator.generate_batch([self.generator.render(messages)])[0]
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.prompt_tokens += g.prompt_tokens
        self.completion_tokens += g.completion_tokens
        if self.bar is not None:
            self.bar.update(1)
        usage = Usage(
            input_tokens=g.prompt_tokens,
            output_tokens=g.completion_tokens,
            total_tokens=g.prompt_tokens + g.completion_tokens,
        )
        message = Message.assistant([TextPart(g.text)])
        return Response(id=None, model=self.generator.name, message=message, finish_reason="stop", usage=usage)

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def _adapter(template: PromptTemplate, context: bool) -> Any:
    """A DSPy adapter that writes a call as the pipeline's template does and reads the whole
    output as the answer."""
    import dspy

    class TemplateAdapter(dspy.Adapter):
        def format(self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
            shots = [_shot(d, context) for d in demos if d.get("answer")]
            passages = inputs.get("context", ()) if context else ()
            return template.messages(inputs["question"], passages, shots)

        def parse(self, signature: Any, completion: str) -> dict[str, Any]:
            return {"answer": completion.strip()}

    return TemplateAdapter()


def _shot(demo: Any, context: bool) -> tuple[str, str] | tuple[str, str, Sequence[str]]:
    if context:
        return demo["question"], demo["answer"], tuple(demo.get("context", ()))
    return demo["question"], demo["answer"]


def most_calls(settings: OptimizeConfig, train: int, validation: int) -> int:
    """Generator calls a search makes at most: every candidate scored on the validation
    questions (zero-shot, labels only, plain bootstrapping and the random sets), all but the
    first two bootstrapped from the training questions (a bootstrap stops once it holds
    enough demonstrations)."""
    return (settings.candidates + 3) * validation + (settings.candidates + 1) * train


def optimize_demos(
    generator: Generator,
    template: PromptTemplate,
    train: Sequence[Question],
    validation: Sequence[Question],
    metric: Callable[[str, tuple[str, ...]], float],
    settings: OptimizeConfig,
    context: bool,
) -> OptimizedPrompt:
    """The demonstrations DSPy's random search over bootstrapped few-shot sets finds best on
    `validation`, bootstrapped from `train` (an answer scoring at least `settings.threshold`
    becomes a demonstration); `metric(output, answers)` is the task's primary metric."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch prices at import
    try:
        import dspy
    except ImportError:
        raise RagftError("prompt optimization needs DSPy: pip install 'ragft[dspy]'") from None
    if not train or not validation:
        raise RagftError("prompt optimization needs training questions to bootstrap from and to validate on")

    fields = ("context", "question") if context else ("question",)

    def example(q: Question) -> Any:
        values = {"question": q.question, "answer": q.answers[0], "answers": q.answers}
        if context:
            values["context"] = list(q.passages)
        return dspy.Example(**values).with_inputs(*fields)

    def score(gold: Any, predicted: Any, trace: Any = None) -> float | bool:
        value = metric(predicted.answer, tuple(gold.answers))
        return value >= settings.threshold if trace is not None else value

    bar = progress(total=most_calls(settings, len(train), len(validation)), desc="prompt search (DSPy)", unit="call")
    engine = _Engine(generator, bar)
    lm = dspy.LM(f"ragft/{generator.name}", engine=engine, cache=False)
    signature = "context, question -> answer" if context else "question -> answer"
    quiet = logging.getLogger("dspy")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:  # DSPy prints its search to stdout; ragft's report says what it found
        with dspy.context(lm=lm, adapter=_adapter(template, context)), contextlib.redirect_stdout(io.StringIO()):
            search = dspy.BootstrapFewShotWithRandomSearch(
                score,
                max_bootstrapped_demos=settings.demos,
                max_labeled_demos=settings.demos,
                num_candidate_programs=settings.candidates,
                num_threads=1,
                metric_threshold=settings.threshold,
            )
            program = search.compile(
                dspy.Predict(signature), trainset=[example(q) for q in train], valset=[example(q) for q in validation]
            )
    finally:
        quiet.setLevel(level)
        bar.close()
    best = program.candidate_programs[0]
    demos = tuple(
        Demo(d["question"], d["answer"], tuple(d.get("context", ())) if context else ())
        for d in program.demos
        if d.get("answer")
    )
    return OptimizedPrompt(
        demos,
        float(best["score"]) / 100,
        len(program.candidate_programs),
        engine.calls,
        engine.prompt_tokens,
        engine.completion_tokens,
        engine.seconds,
    )


def prompt_dir(run: Path, label: str) -> Path:
    """Where an optimized pipeline's prompt lives in the run folder (`rag+dspy` -> prompts/rag_dspy)."""
    return run / "prompts" / label.replace("+", "_").replace("@", "_")


def optimized_prompt(
    folder: Path,
    generator: Generator,
    template: PromptTemplate,
    questions: Callable[[], tuple[list[Question], list[Question]]],
    metric: Callable[[str, tuple[str, ...]], float],
    settings: OptimizeConfig,
    context: bool,
    key: str,
) -> OptimizedPrompt:
    """The optimized prompt saved in `folder` with this key, else optimized now and saved
    (`questions()` gives the training and validation questions; an interrupted optimization
    starts again)."""
    try:
        manifest = read_manifest(folder, "optimized-prompt")
        if manifest.get("fingerprint") == key:
            return OptimizedPrompt.from_dict(read_json(folder / "prompt.json"))
    except (ArtifactError, InputError, KeyError, TypeError):
        pass
    train, validation = questions()
    result = optimize_demos(generator, template, train, validation, metric, settings, context)
    with atomic_dir(folder) as tmp:
        write_json_atomic(tmp / "prompt.json", result.to_dict())
        write_manifest(
            tmp,
            {
                "kind": "optimized-prompt",
                "fingerprint": key,
                "optimizer": "dspy.BootstrapFewShotWithRandomSearch",
                "settings": asdict(settings),
                "versions": library_versions("ragft", "dspy"),
            },
        )
    return result
