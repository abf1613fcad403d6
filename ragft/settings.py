"""Pipelines resolved to what the runner runs (`PipelineSettings`), and the checks between them.

A resolved pipeline is its name, its prompt template, whether retrieved context and solved
examples are shown, whether it trains an adapter (and on which records), and its own
settings sections: the experiment's, with what that pipeline overrides (another retriever,
base model, decoding or fine-tuning recipe), plus the seed and the folder paths are read
from. Below the runner nobody holds a whole `Config`: tasks, keys and parts read these
sections. The ladder presets (`prompt`, `fewshot`, `rag`, `dspy`, `rag+dspy`, `ft`,
`rag+ft`) are pipelines of fixed shape; `[[pipelines]]` tables and `ragft.Pipeline`s add others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ragft.config import (
    PIPELINE_SECTIONS,
    ChunkingConfig,
    Config,
    FinetuneConfig,
    GenerationConfig,
    ModelsConfig,
    OptimizeConfig,
    PipelineConfig,
    PricesConfig,
    RetrievalConfig,
    SqlConfig,
    SynthConfig,
    pipeline_settings,
    reads_feedback,
    resolve_path,
)
from ragft.errors import ConfigError, InputError
from ragft.prompts import PromptTemplate, get_template
from ragft.types import Demo

FEWSHOT = 3
"""Solved training examples shown by the `fewshot` preset."""

CONTEXTS = ("none", "oracle", "retrieved")
"""The three ways a model is shown context in the three-way view."""


@dataclass(frozen=True)
class Preset:
    """The shape of a ladder pipeline: its template, what it shows, whether it trains."""

    template: str
    context: bool
    shots: int
    trained: bool
    optimized: bool = False


LADDER = {
    "prompt": Preset("qa", context=False, shots=0, trained=False),
    "fewshot": Preset("qa", context=False, shots=FEWSHOT, trained=False),
    "rag": Preset("qa-context", context=True, shots=0, trained=False),
    "dspy": Preset("qa", context=False, shots=0, trained=False, optimized=True),
    "rag+dspy": Preset("qa-context", context=True, shots=0, trained=False, optimized=True),
    "ft": Preset("qa", context=False, shots=0, trained=True),
    "rag+ft": Preset("qa-context", context=True, shots=0, trained=True),
}


@dataclass(frozen=True)
class TrainedAdapter:
    """Another pipeline's trained adapter as a pipeline reads it: whose it is, its key, its folder."""

    pipeline: str
    key: str
    folder: Path


@dataclass(frozen=True)
class PipelineSettings:
    """One pipeline of an experiment, resolved: how its prompts are built, whether it
    trains, and the settings it runs with."""

    name: str
    template: PromptTemplate
    context: bool
    """Retrieved context goes into the prompt (passages; for SQL, similar solved examples)."""
    shots: int
    """Fixed solved training examples shown before the question."""
    trained: bool
    models: ModelsConfig
    chunking: ChunkingConfig
    retrieval: RetrievalConfig
    generation: GenerationConfig
    finetune: FinetuneConfig
    optimize: OptimizeConfig
    synth: SynthConfig
    sql: SqlConfig
    prices: PricesConfig
    seed: int
    """The experiment's seed (another one for a pipeline trained again with another seed)."""
    base_dir: str = "."
    """Folder that relative paths in its settings are resolved against (the config file's folder)."""
    source: str = ""
    """The config file, for errors."""
    oracle: bool = False
    """Context is the gold passage (for SQL, the solved examples closest to the gold query)
    instead of what the retriever found; only the three-way context view uses it."""
    optimized: bool = False
    """Its solved examples are chosen by DSPy's optimizer on the train split (`ragft.optimize`)."""
    demos: tuple[Demo, ...] = ()
    """The solved examples an optimized pipeline shows, once its prompt is optimized."""
    checker: TrainedAdapter | None = None
    """The adapter of the pipeline that asks this one's synthetic round trips (`synth.checker`),
    set by the runner, which trains it before it asks the task for this pipeline's pairs."""

    @classmethod
    def of(
        cls,
        name: str,
        template: PromptTemplate,
        context: bool,
        shots: int,
        trained: bool,
        config: Config,
        optimized: bool = False,
    ) -> PipelineSettings:
        """A pipeline of this shape with the sections of `config` (the experiment's settings
        with the pipeline's overrides applied)."""
        sections = {name: getattr(config, name) for name in PIPELINE_SECTIONS}
        where = dict(seed=config.experiment.seed, base_dir=config.base_dir, source=config.source)
        return cls(name, template, context, shots, trained, **sections, **where, optimized=optimized)

    def path(self, value: str) -> Path:
        """A path from the settings, resolved against the config file's folder."""
        return resolve_path(self.base_dir, value)

    def with_demos(self, demos: Sequence[Demo]) -> PipelineSettings:
        """The same pipeline showing these solved examples (each with its own passages)."""
        return replace(self, demos=tuple(demos))

    @property
    def view(self) -> str:
        """Which context the model sees: none, oracle or retrieved."""
        return "oracle" if self.oracle else "retrieved" if self.context else "none"

    @property
    def raft(self) -> bool:
        """Training prompts carry the gold passage among retrieved distractors (RAFT)."""
        return self.trained and self.context and self.finetune.records in ("auto", "raft")

    def with_context(self, context: str) -> PipelineSettings:
        """The same pipeline (same adapter, if trained) shown no context, the oracle context or
        retrieved context; a template that cannot show the context is swapped for the named one."""
        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}; known: {', '.join(CONTEXTS)}")
        shown = context != "none"
        template = self.template
        if shown != template.shows_context:
            template = get_template("qa-context" if shown else "qa")
        return replace(self, template=template, context=shown, oracle=context == "oracle")

    def with_seed(self, seed: int) -> PipelineSettings:
        """The same pipeline trained with another seed."""
        return replace(self, name=f"{self.name}@seed{seed}", seed=seed)

    def untrained(self, name: str) -> PipelineSettings:
        """The same prompts on the base model (the three-way view's and forgetting check's baseline)."""
        return replace(self, name=name, trained=False)


def base_name(pipeline: PipelineSettings, generator: str) -> str:
    """The row name of a pipeline's base model: `base` for the experiment's `generator`,
    `base (<generator's last path part>)` for another."""
    own = pipeline.models.generator
    return "base" if own == generator else f"base ({own.rstrip('/').split('/')[-1]})"  # a file name: no path


def base_models(pipelines: Sequence[PipelineSettings], generator: str) -> dict[str, PipelineSettings]:
    """The untrained counterpart of every trained pipeline's base model, by row name
    (`base_name`): its prompts on the base model, with no adapter."""
    out: dict[str, PipelineSettings] = {}
    for p in pipelines:
        if p.trained:
            name = base_name(p, generator)
            out.setdefault(name, p.untrained(name))
    return out


def ladder(config: Config, presets: Sequence[str]) -> list[PipelineSettings]:
    """The ladder presets: one pipeline per named preset, all with the experiment's settings."""
    out = []
    for v in presets:
        p = LADDER[v]
        out.append(PipelineSettings.of(v, get_template(p.template), p.context, p.shots, p.trained, config, p.optimized))
    return out


def resolve_pipelines(config: Config) -> list[PipelineSettings]:
    """The experiment's pipelines: the ladder presets of `experiment.presets`, then every
    `[[pipelines]]` table with its overrides applied. Errors name the pipeline."""
    pipelines = ladder(config, config.experiment.presets)
    for table in config.pipelines:
        pipelines.append(_from_table(config, table))
    check_pipelines(pipelines, config.data.kind, config.source or None)
    return pipelines


def check_pipelines(pipelines: Sequence[PipelineSettings], kind: str, source: str | None = None) -> None:
    """The rules across an experiment's pipelines, for TOML configs and Python pipelines
    alike: names that can name files, what each task kind supports, endpoints, the adapters
    a pipeline goes on from and the checkers of synthetic pairs."""
    check_names([p.name for p in pipelines], source)
    synthetic = [p.name for p in pipelines if p.trained and p.finetune.train_data]
    if synthetic and kind != "qa":
        raise ConfigError(
            f"{', '.join(synthetic)}: finetune.train_data (other training pairs) applies to qa tasks, not {kind}",
            source,
        )
    optimized = [p.name for p in pipelines if p.optimized]
    if optimized and kind != "qa":
        raise ConfigError(f"{', '.join(optimized)}: prompt optimization with DSPy runs on qa tasks, not {kind}", source)
    for p in pipelines:
        check_endpoint(p, source)
    check_starts(pipelines, source)


def check_endpoint(pipeline: PipelineSettings, source: str | None = None) -> None:
    """A generator behind an endpoint answers prompts; it cannot be trained or score passages."""
    c = pipeline
    if not c.models.endpoint:
        return
    if pipeline.trained:
        raise ConfigError(
            f"pipeline {pipeline.name!r}: models.endpoint: a generator behind an endpoint owns its weights, so it "
            "cannot be fine-tuned here (serve a trained pipeline with `ragft serve` and point the endpoint at it)",
            source,
        )
    if c.retrieval.rerank == "generator" and pipeline.context:
        raise ConfigError(
            f"pipeline {pipeline.name!r}: retrieval.rerank = 'generator' scores passages with the generator's own "
            "tokens, which an endpoint does not give; rerank with a cross-encoder instead",
            source,
        )


def check_starts(pipelines: Sequence[PipelineSettings], source: str | None = None) -> None:
    """Training that goes on from another pipeline's adapter (`finetune.init_from`) needs a
    trained one of the same base model and adapter shape; preference objectives need feedback."""
    from ragft.config import FINETUNE_METHOD_KEYS

    by_name = {a.name: a for a in pipelines}
    for pipeline in pipelines:
        ft = pipeline.finetune
        if not pipeline.trained:
            continue
        who = f"pipeline {pipeline.name!r}"
        if ft.objective != "sft" and not reads_feedback(ft.train_data):
            raise ConfigError(
                f"{who}: finetune.objective = {ft.objective!r} learns from feedback: set finetune.train_data = "
                "'feedback' (what `ragft serve` collected in the run folder) or a feedback.sqlite file",
                source,
            )
        if not ft.init_from:
            continue
        start = _named_trained(pipelines, pipeline, "finetune.init_from", ft.init_from, source)
        seen = {pipeline.name}
        step = start
        while step.finetune.init_from in by_name:  # A starts from B starts from A
            if step.name in seen:
                raise ConfigError(f"{who}: finetune.init_from goes round in a circle through {step.name!r}", source)
            seen.add(step.name)
            step = by_name[step.finetune.init_from]
        s = start.finetune
        same = ("method", *FINETUNE_METHOD_KEYS.get(ft.method, ()))
        differ = [k for k in same if getattr(s, k) != getattr(ft, k)]
        keys = ", ".join(f"finetune.{k}" for k in differ)
        if ft.method == "full":
            what = "a full fine-tune has no adapter to go on from"
        elif differ:
            what = f"{keys} {'differs' if len(differ) == 1 else 'differ'} from {start.name!r}'s"
        elif start.models.generator != pipeline.models.generator:
            what = f"its base model differs from {start.name!r}'s"
        else:
            continue
        raise ConfigError(f"{who}: goes on training {start.name!r}'s adapter, but {what}", source)
    check_checkers(pipelines, source)


def check_checkers(pipelines: Sequence[PipelineSettings], source: str | None = None) -> None:
    """A synthesis whose round trip another pipeline asks (`synth.checker`) needs a trained
    pipeline on the same base model, and no circle of pipelines waiting on each other's adapters."""
    by_name = {a.name: a for a in pipelines}
    for pipeline in pipelines:
        name = pipeline.synth.checker
        if not name:
            continue
        who = f"pipeline {pipeline.name!r}"
        if not (pipeline.trained and pipeline.finetune.train_data == "synth"):
            raise ConfigError(
                f"{who}: synth.checker applies to a pipeline trained on pairs it writes "
                "(finetune.train_data = 'synth')",
                source,
            )
        if not pipeline.synth.asks_back:
            skips = (
                "synth.roundtrip = false skips"
                if pipeline.synth.roundtrip is False
                else "the rule method skips unless synth.roundtrip = true (or set synth.method = 'answer_first')"
            )
            raise ConfigError(f"{who}: synth.checker asks the round trips, which {skips}", source)
        checker = _named_trained(pipelines, pipeline, "synth.checker", name, source)
        mine, theirs = pipeline.models, checker.models
        if (mine.generator, mine.dtype, mine.device) != (theirs.generator, theirs.dtype, theirs.device):
            raise ConfigError(
                f"{who}: synth.checker = {name!r} is fine-tuned from another base model (models.generator, "
                "dtype and device must agree: its adapter goes on this pipeline's model)",
                source,
            )
        path = _waits_for(pipeline.name, name, by_name)
        if path:
            raise ConfigError(f"{who}: synth.checker goes round in a circle: {' -> '.join(path)}", source)


def _named_trained(
    pipelines: Sequence[PipelineSettings], pipeline: PipelineSettings, setting: str, name: str, source: str | None
) -> PipelineSettings:
    """The trained pipeline other than `pipeline` that its `setting` names; an error naming
    `pipeline` where there is none."""
    named = next((a for a in pipelines if a.name == name), None)
    if name == pipeline.name:
        raise ConfigError(f"pipeline {pipeline.name!r}: {setting} names the pipeline itself", source)
    if named is None or not named.trained:
        trained = [a.name for a in pipelines if a.trained and a.name != pipeline.name]
        raise ConfigError(
            f"pipeline {pipeline.name!r}: {setting} = {name!r} names no trained pipeline of this experiment "
            f"(trained: {', '.join(trained) or 'none'})",
            source,
        )
    return named


def _needs(pipeline: PipelineSettings) -> list[str]:
    """The pipelines whose adapters this one's training waits for: its start and its checker."""
    ft = pipeline.finetune
    out = [ft.init_from] if pipeline.trained and ft.init_from else []
    if pipeline.trained and ft.train_data == "synth" and pipeline.synth.checker:
        out.append(pipeline.synth.checker)
    return out


def _waits_for(origin: str, first: str, by_name: dict[str, PipelineSettings]) -> list[str]:
    """The chain of pipelines from `origin` through `first` back to `origin`, if there is one."""
    stack, seen = [[origin, first]], {origin}
    while stack:
        path = stack.pop()
        if path[-1] == origin:
            return path
        if path[-1] in seen or path[-1] not in by_name:
            continue
        seen.add(path[-1])
        stack += [[*path, n] for n in _needs(by_name[path[-1]])]
    return []


def check_names(names: Sequence[str], source: str | None = None) -> None:
    """Every pipeline needs a name of its own that can name its files."""
    if not names:
        raise ConfigError("no pipelines to run: name experiment.presets or add [[pipelines]]", source)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two pipelines are named {name!r}; each needs its own name", source)
        if not name or any(ch in name for ch in '/\\:*?"<>|@') or name.startswith("."):
            raise ConfigError(f'pipeline name {name!r} cannot name its files (no / \\ : * ? " < > | @)', source)
        seen.add(name)


def _from_table(config: Config, table: PipelineConfig) -> PipelineSettings:
    preset = LADDER[table.base]
    settings = pipeline_settings(config, table)
    where = dict(path=config.source or None, line=table.line)
    who = f"pipeline {table.name!r}"
    if settings.finetune.records == "raft" and not preset.context:
        raise ConfigError(
            f"{who}: finetune.records = 'raft' trains on retrieved passages, but base {table.base!r} "
            "has no retriever (use base 'rag+ft', or records 'sft')",
            **where,
        )
    template = get_template(preset.template)
    if table.template:
        if config.data.kind != "qa":
            raise ConfigError(f"{who}: templates apply to qa tasks; {config.data.kind} prompts are the task's", **where)
        try:
            template = custom_template(table.template, table.name)
        except InputError as e:
            raise ConfigError(f"{who}: {e}", **where) from None
        if template.shows_context != preset.context:
            shows = "shows {context}" if template.shows_context else "has no {context}"
            raise ConfigError(
                f"{who}: template {template.name!r} {shows}, but base {table.base!r} "
                f"{'retrieves' if preset.context else 'does not retrieve'}",
                **where,
            )
    return PipelineSettings.of(
        table.name, template, preset.context, preset.shots, preset.trained, settings, preset.optimized
    )


def custom_template(spec: str | dict[str, str], pipeline: str) -> PromptTemplate:
    """A named template, or one written in the config (system, user; name defaults to the pipeline's)."""
    if isinstance(spec, str):
        return get_template(spec)
    return PromptTemplate(spec.get("name", pipeline), spec.get("system", ""), spec["user"]).checked()


def settings_record(pipeline: PipelineSettings) -> dict[str, object]:
    """Everything a pipeline runs with, for the run folder's pipelines.json."""
    c = pipeline
    return {
        "template": dataclasses.asdict(pipeline.template),
        "context": pipeline.context,
        "shots": pipeline.shots,
        "trained": pipeline.trained,
        "optimized": pipeline.optimized,
        **{name: dataclasses.asdict(getattr(c, name)) for name in PIPELINE_SECTIONS},
    }


def settings_summary(p: PipelineSettings) -> dict[str, object]:
    """What sets a pipeline apart, for the report."""
    c = p
    out: dict[str, object] = {"template": p.template.name, "generator": c.models.generator, "trained": p.trained}
    if p.context:
        out["retrieval"] = c.retrieval.method
        out["k"] = c.retrieval.k
    if p.shots:
        out["shots"] = p.shots
    if p.trained:
        out["method"] = c.finetune.method
        out["records"] = "raft" if p.raft else "sft"
    if p.optimized:
        out["optimized"] = "dspy"
        out["demos"] = c.optimize.demos
    return out
