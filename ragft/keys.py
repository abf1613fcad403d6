"""Cache keys of a pipeline's stages, derived in one place from what each stage reads.

A stage's key hashes the identities of its inputs: content hashes of the data it reads
(supplied by the task, which knows its data), the settings it reads and no others, the
resolved model identity, dtype and device, and the keys of the stages it consumes. The
runner names and checks its artifacts by these keys and builds none itself, and
`tests/test_keys.py` changes every config key to check which artifacts it reaches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ragft.config import FINETUNE_METHOD_KEYS, FinetuneConfig, SynthConfig
from ragft.io import sha256_json
from ragft.synth import writing
from ragft.synth.synthesize import RULES

if TYPE_CHECKING:
    from ragft.settings import PipelineSettings


class KeyedTask(Protocol):
    """The identities a task gives of its data, for the keys of the stages that read it."""

    def index_identity(self) -> Any:
        """What the vector index is built from (None: the task searches no vector index)."""
        ...

    def retriever_identity(self) -> Any:
        """What decides which context comes back for a query, apart from how many."""
        ...

    def oracle_identity(self) -> Any:
        """What decides the oracle context of each test example."""
        ...

    def training_identity(self, pipeline: PipelineSettings) -> Any:
        """What a pipeline's training records are made from, apart from the fine-tuning settings."""
        ...

    def prompt_identity(self, pipeline: PipelineSettings) -> Any:
        """The test examples and solved examples a pipeline's prompts are built from."""
        ...

    def scoring_identity(self) -> Any:
        """What decides an output's scores."""
        ...


FINETUNE_RUN_ONLY = ("checkpoint_every", "gradient_checkpointing")
"""finetune keys that change how training runs, not the weights it ends with: left out of
the adapter's cache key, so changing them reuses a trained adapter."""
FINETUNE_FEEDBACK_KEYS = ("objective", "beta")
"""finetune keys of preference training: in an adapter's key only when the objective is not
sft, so adapters trained before them keep their keys (`init_from` enters by the starting
adapter's own key)."""
RAFT_KEYS = ("distractors", "p_no_gold", "quote")
"""finetune keys only RAFT records read."""


@dataclass(frozen=True)
class StageKeys:
    """The key of every artifact a pipeline makes or reads (None: it has no such stage)."""

    index: str | None
    hits: str | None
    """Retrieved context of the test questions."""
    adapter: str | None
    prompt: str | None
    """The optimized prompt (its demonstrations), for pipelines whose prompt DSPy optimizes."""
    predictions: str

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def key(*parts: Any) -> str:
    return sha256_json(parts)


def finetune_identity(ft: FinetuneConfig, raft: bool) -> dict[str, Any]:
    """The fine-tuning settings an adapter's weights depend on: not run-only ones, not
    another method's, and RAFT's only for RAFT records."""
    other_methods = {k for m, keys in FINETUNE_METHOD_KEYS.items() if m != ft.method for k in keys}
    # train_data names the training pairs; the task's training identity holds their content
    skip = {*FINETUNE_RUN_ONLY, "records", "train_data", *(other_methods - set(FINETUNE_METHOD_KEYS[ft.method]))}
    if not raft:
        skip |= set(RAFT_KEYS)
    # the starting adapter enters by its own key (adapter_key); sft, the default, adds nothing
    skip |= {"init_from"} | (set(FINETUNE_FEEDBACK_KEYS) if ft.objective == "sft" else set())
    return {k: v for k, v in asdict(ft).items() if k not in skip}


def synthesis_key(
    chunks: str,
    generator: dict[str, Any],
    decoding: Any,
    embedder: Any,
    settings: SynthConfig,
    seed: int,
    checker: str | None = None,
) -> str:
    """What a synthesis's pairs depend on: the chunks (`chunks_identity`), the writing
    generator's identity and decoding, the embedder (near duplicates), the settings, the seed (chunk
    sample), the prompts, the version of the span and filter rules (`RULES`) and, where a
    checker asks the round trip, the key of its adapter (`checker`)."""
    prompts = [writing.SYSTEM, writing.EXAMPLES, writing.roundtrip_messages("{q}", "{p}")]
    read = asdict(settings)
    del read["generator"]  # the writer enters by its identity, `generator`
    del read["checker"]  # the checker enters by its adapter's key
    read["roundtrip"] = settings.asks_back  # unset as what it resolves to: keys made before it could be unset
    if settings.method != "answer_first":
        del read["question_word"]  # answer-first only
    if settings.method == "rule":
        del read["max_new_tokens"], read["dedupe_similarity"]  # no model writes; repeats word for word
    parts: tuple[Any, ...] = chunks, generator, decoding, embedder, read, seed, prompts, RULES
    if checker is not None and settings.asks_back:
        parts += ({"checker": checker},)
    return key("synth", *parts)


def hits_key(task: KeyedTask, k: int) -> str:
    """The key of the top-k context retrieved for each test question."""
    return key("hits", task.retriever_identity(), k)


def adapter_key(trained: PipelineSettings, task: KeyedTask, generator: dict[str, Any], start: str | None = None) -> str:
    """The key of a trained pipeline's adapter. `generator` is the base model's identity
    (`Resources.generator_identity`); `start`, the key of the adapter it goes on training
    (`finetune.init_from`)."""
    parts: list[Any] = [
        "adapter",
        generator,
        finetune_identity(trained.finetune, trained.raft),
        trained.seed,
        asdict(trained.template),
        task.training_identity(trained),
    ]
    return key(*parts, {"init_from": start}) if start is not None else key(*parts)


def prompt_key(optimized: PipelineSettings, task: KeyedTask, generator: dict[str, Any]) -> str:
    """The key of an optimized pipeline's prompt: the questions it is optimized on (and the
    passages they are shown), its template, the generator and its decoding, the optimizer's
    settings, the seed and how answers are scored."""
    c = optimized
    return key(
        "prompt",
        generator,
        asdict(c.generation),
        asdict(c.optimize),
        c.seed,
        asdict(optimized.template),
        task.training_identity(optimized),
        task.scoring_identity(),
    )


def predictions_key(
    pipeline: PipelineSettings,
    task: KeyedTask,
    generator: dict[str, Any],
    adapter: str | None,
    hits: str | None,
    prompt: str | None = None,
) -> str:
    """The key of a pipeline's predictions on a task's test examples."""
    p = pipeline
    context: Any = hits if p.view == "retrieved" else task.oracle_identity() if p.view == "oracle" else None
    parts: list[Any] = [
        "predictions",
        generator,
        asdict(p.generation),
        adapter,
        asdict(p.template),
        context,
        task.prompt_identity(p),
        task.scoring_identity(),
    ]
    # Only optimized pipelines add their prompt key, so every other pipeline's key stays as it was.
    return key(*parts, prompt) if prompt is not None else key(*parts)


def stage_keys(
    pipeline: PipelineSettings,
    task: KeyedTask,
    generator: dict[str, Any],
    trained: PipelineSettings | None = None,
    start: str | None = None,
) -> StageKeys:
    """The keys of one pipeline's stages. `trained` is the pipeline whose adapter this one
    uses, when it is another context view of it; `start`, the key of the adapter that one
    starts from."""
    p, trained = pipeline, trained or pipeline
    reads_context = p.context or trained.context
    index_identity = task.index_identity() if reads_context else None
    index = key("index", index_identity) if index_identity is not None else None
    hits = hits_key(task, p.retrieval.k) if reads_context else None
    adapter = adapter_key(trained, task, generator, start) if trained.trained else None
    prompt = prompt_key(p, task, generator) if p.optimized else None
    return StageKeys(index, hits, adapter, prompt, predictions_key(p, task, generator, adapter, hits, prompt))
