"""Arms: pipelines resolved to what the runner runs.

An arm is a pipeline's name, its prompt template, whether retrieved context and solved
examples are shown, whether it trains an adapter (and on which records), and its own
settings: the experiment's, with what that pipeline overrides (another retriever, base
model, decoding or fine-tuning recipe). The ladder (`prompt`, `fewshot`, `rag`, `ft`,
`rag+ft`) is a preset of five; `[[pipelines]]` tables and `ragft.Pipeline`s add others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ragft.config import PIPELINE_SECTIONS, Config, PipelineConfig, pipeline_settings, reads_feedback
from ragft.errors import ConfigError, InputError
from ragft.prompts import PromptTemplate, get_template
from ragft.types import Demo

FEWSHOT = 3
"""Solved training examples shown by the `fewshot` preset."""

CONTEXTS = ("none", "oracle", "retrieved")
"""The three ways a model is shown context in the three-way view."""


@dataclass(frozen=True)
class Preset:
    """The shape of a ladder arm: its template, what it shows, whether it trains."""

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
class Arm:
    """One pipeline of an experiment, resolved: how its prompts are built, whether it
    trains, and the settings it runs with."""

    name: str
    template: PromptTemplate
    context: bool
    """Retrieved context goes into the prompt (passages; for SQL, similar solved examples)."""
    shots: int
    """Fixed solved training examples shown before the question."""
    trained: bool
    config: Config
    """The experiment's settings with this pipeline's overrides; its parts read their own sections."""
    oracle: bool = False
    """Context is the gold passage (for SQL, the solved examples closest to the gold query)
    instead of what the retriever found; only the three-way context view uses it."""
    optimized: bool = False
    """Its solved examples are chosen by DSPy's optimizer on the train split (`ragft.optimize`)."""
    demos: tuple[Demo, ...] = ()
    """The solved examples an optimized pipeline shows, once its prompt is optimized."""

    def with_demos(self, demos: Sequence[Demo]) -> Arm:
        """The same pipeline showing these solved examples (each with its own passages)."""
        return replace(self, demos=tuple(demos))

    @property
    def view(self) -> str:
        """Which context the model sees: none, oracle or retrieved."""
        return "oracle" if self.oracle else "retrieved" if self.context else "none"

    @property
    def raft(self) -> bool:
        """Training prompts carry the gold passage among retrieved distractors (RAFT)."""
        return self.trained and self.context and self.config.finetune.records in ("auto", "raft")

    def with_context(self, context: str) -> Arm:
        """The same pipeline (same adapter, if trained) shown no context, the oracle context or
        retrieved context; a template that cannot show the context is swapped for the named one."""
        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}; known: {', '.join(CONTEXTS)}")
        shown = context != "none"
        template = self.template
        if shown != template.shows_context:
            template = get_template("qa-context" if shown else "qa")
        return replace(self, template=template, context=shown, oracle=context == "oracle")

    def with_seed(self, seed: int) -> Arm:
        """The same pipeline trained with another seed."""
        experiment = replace(self.config.experiment, seed=seed)
        return replace(self, name=f"{self.name}@seed{seed}", config=replace(self.config, experiment=experiment))

    def untrained(self, name: str) -> Arm:
        """The same prompts on the base model (the three-way view's and forgetting check's baseline)."""
        return replace(self, name=name, trained=False)


def base_name(pipeline: Arm, generator: str) -> str:
    """The row name of a pipeline's base model: `base` for the experiment's `generator`,
    `base (<generator's last path part>)` for another."""
    own = pipeline.config.models.generator
    return "base" if own == generator else f"base ({own.rstrip('/').split('/')[-1]})"  # a file name: no path


def base_models(pipelines: Sequence[Arm], generator: str) -> dict[str, Arm]:
    """The untrained counterpart of every trained pipeline's base model, by row name
    (`base_name`): its prompts on the base model, with no adapter."""
    out: dict[str, Arm] = {}
    for p in pipelines:
        if p.trained:
            name = base_name(p, generator)
            out.setdefault(name, p.untrained(name))
    return out


def ladder(config: Config, variants: Sequence[str]) -> list[Arm]:
    """The ladder preset: one pipeline per named variant, all with the experiment's settings."""
    out = []
    for v in variants:
        p = LADDER[v]
        out.append(Arm(v, get_template(p.template), p.context, p.shots, p.trained, config, optimized=p.optimized))
    return out


def resolve_arms(config: Config) -> list[Arm]:
    """The experiment's pipelines: the ladder presets of `experiment.variants`, then every
    `[[pipelines]]` table with its overrides applied. Errors name the pipeline."""
    arms = ladder(config, config.experiment.variants)
    for table in config.pipelines:
        arms.append(_from_table(config, table))
    check_names([a.name for a in arms], config.source or None)
    synthetic = [a.name for a in arms if a.trained and a.config.finetune.train_data]
    if synthetic and config.data.kind != "qa":
        raise ConfigError(
            f"{', '.join(synthetic)}: finetune.train_data (other training pairs) applies to qa tasks, not "
            f"{config.data.kind}",
            config.source or None,
        )
    for a in arms:
        check_endpoint(a, config.source or None)
    check_starts(arms, config.source or None)
    optimized = [a.name for a in arms if a.optimized]
    if optimized and config.data.kind != "qa":
        raise ConfigError(
            f"{', '.join(optimized)}: prompt optimization with DSPy runs on qa tasks, not {config.data.kind}",
            config.source or None,
        )
    return arms


def check_endpoint(arm: Arm, source: str | None = None) -> None:
    """A generator behind an endpoint answers prompts; it cannot be trained or score passages."""
    c = arm.config
    if not c.models.endpoint:
        return
    if arm.trained:
        raise ConfigError(
            f"pipeline {arm.name!r}: models.endpoint: a generator behind an endpoint owns its weights, so it "
            "cannot be fine-tuned here (serve a trained pipeline with `ragft serve` and point the endpoint at it)",
            source,
        )
    if c.retrieval.rerank == "generator" and arm.context:
        raise ConfigError(
            f"pipeline {arm.name!r}: retrieval.rerank = 'generator' scores passages with the generator's own "
            "tokens, which an endpoint does not give; rerank with a cross-encoder instead",
            source,
        )


def check_starts(arms: Sequence[Arm], source: str | None = None) -> None:
    """Training that goes on from another pipeline's adapter (`finetune.init_from`) needs a
    trained one of the same base model and adapter shape; preference objectives need feedback."""
    from ragft.config import FINETUNE_METHOD_KEYS

    by_name = {a.name: a for a in arms}
    for arm in arms:
        ft = arm.config.finetune
        if not arm.trained:
            continue
        who = f"pipeline {arm.name!r}"
        if ft.objective != "sft" and not reads_feedback(ft.train_data):
            raise ConfigError(
                f"{who}: finetune.objective = {ft.objective!r} learns from feedback: set finetune.train_data = "
                "'feedback' (what `ragft serve` collected in the run folder) or a feedback.sqlite file",
                source,
            )
        if not ft.init_from:
            continue
        start = _named_trained(arms, arm, "finetune.init_from", ft.init_from, source)
        seen = {arm.name}
        step = start
        while step.config.finetune.init_from in by_name:  # A starts from B starts from A
            if step.name in seen:
                raise ConfigError(f"{who}: finetune.init_from goes round in a circle through {step.name!r}", source)
            seen.add(step.name)
            step = by_name[step.config.finetune.init_from]
        s = start.config.finetune
        same = ("method", *FINETUNE_METHOD_KEYS.get(ft.method, ()))
        differ = [k for k in same if getattr(s, k) != getattr(ft, k)]
        keys = ", ".join(f"finetune.{k}" for k in differ)
        if ft.method == "full":
            what = "a full fine-tune has no adapter to go on from"
        elif differ:
            what = f"{keys} {'differs' if len(differ) == 1 else 'differ'} from {start.name!r}'s"
        elif start.config.models.generator != arm.config.models.generator:
            what = f"its base model differs from {start.name!r}'s"
        else:
            continue
        raise ConfigError(f"{who}: goes on training {start.name!r}'s adapter, but {what}", source)
    check_checkers(arms, source)


def check_checkers(arms: Sequence[Arm], source: str | None = None) -> None:
    """A synthesis whose round trip another pipeline asks (`synth.checker`) needs a trained
    pipeline on the same base model, and no circle of pipelines waiting on each other's adapters."""
    by_name = {a.name: a for a in arms}
    for arm in arms:
        name = arm.config.synth.checker
        if not name:
            continue
        who = f"pipeline {arm.name!r}"
        if not (arm.trained and arm.config.finetune.train_data == "synth"):
            raise ConfigError(
                f"{who}: synth.checker applies to a pipeline trained on pairs it writes "
                "(finetune.train_data = 'synth')",
                source,
            )
        if not arm.config.synth.asks_back:
            skips = (
                "synth.roundtrip = false skips"
                if arm.config.synth.roundtrip is False
                else "the rule method skips unless synth.roundtrip = true (or set synth.method = 'answer_first')"
            )
            raise ConfigError(f"{who}: synth.checker asks the round trips, which {skips}", source)
        checker = _named_trained(arms, arm, "synth.checker", name, source)
        mine, theirs = arm.config.models, checker.config.models
        if (mine.generator, mine.dtype, mine.device) != (theirs.generator, theirs.dtype, theirs.device):
            raise ConfigError(
                f"{who}: synth.checker = {name!r} is fine-tuned from another base model (models.generator, "
                "dtype and device must agree: its adapter goes on this pipeline's model)",
                source,
            )
        path = _waits_for(arm.name, name, by_name)
        if path:
            raise ConfigError(f"{who}: synth.checker goes round in a circle: {' -> '.join(path)}", source)


def _named_trained(arms: Sequence[Arm], arm: Arm, setting: str, name: str, source: str | None) -> Arm:
    """The trained pipeline other than `arm` that its `setting` names; refused naming `arm` where there is none."""
    named = next((a for a in arms if a.name == name), None)
    if name == arm.name:
        raise ConfigError(f"pipeline {arm.name!r}: {setting} names the pipeline itself", source)
    if named is None or not named.trained:
        trained = [a.name for a in arms if a.trained and a.name != arm.name]
        raise ConfigError(
            f"pipeline {arm.name!r}: {setting} = {name!r} names no trained pipeline of this experiment "
            f"(trained: {', '.join(trained) or 'none'})",
            source,
        )
    return named


def _needs(arm: Arm) -> list[str]:
    """The pipelines whose adapters this one's training waits for: its start and its checker."""
    ft = arm.config.finetune
    out = [ft.init_from] if arm.trained and ft.init_from else []
    if arm.trained and ft.train_data == "synth" and arm.config.synth.checker:
        out.append(arm.config.synth.checker)
    return out


def _waits_for(origin: str, first: str, by_name: dict[str, Arm]) -> list[str]:
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
        raise ConfigError("no pipelines to run: name experiment.variants or add [[pipelines]]", source)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two pipelines are named {name!r}; each needs its own name", source)
        if not name or any(ch in name for ch in '/\\:*?"<>|@') or name.startswith("."):
            raise ConfigError(f'pipeline name {name!r} cannot name its files (no / \\ : * ? " < > | @)', source)
        seen.add(name)


def _from_table(config: Config, table: PipelineConfig) -> Arm:
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
    return Arm(table.name, template, preset.context, preset.shots, preset.trained, settings, optimized=preset.optimized)


def custom_template(spec: str | dict[str, str], pipeline: str) -> PromptTemplate:
    """A named template, or one written in the config (system, user; name defaults to the pipeline's)."""
    if isinstance(spec, str):
        return get_template(spec)
    return PromptTemplate(spec.get("name", pipeline), spec.get("system", ""), spec["user"]).checked()


def arm_settings(arm: Arm) -> dict[str, object]:
    """Everything an arm runs with, for the run folder's pipelines.json."""
    c = arm.config
    return {
        "template": dataclasses.asdict(arm.template),
        "context": arm.context,
        "shots": arm.shots,
        "trained": arm.trained,
        "optimized": arm.optimized,
        **{name: dataclasses.asdict(getattr(c, name)) for name in PIPELINE_SECTIONS},
    }


def settings_summary(p: Arm) -> dict[str, object]:
    """What sets a pipeline apart, for the report."""
    c = p.config
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
