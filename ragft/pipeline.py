"""Pipelines built in Python (`ragft.Experiment` compares them).

    pipelines = [
        ragft.Pipeline("prompt", gen),
        ragft.Pipeline("rag", gen, retriever=index.dense(k=3)),
        ragft.Pipeline("rag+ft", gen, retriever=index.dense(k=3),
                       finetune=ragft.LoRA(rank=16, records=ragft.RAFT())),
    ]
    report = ragft.Experiment(task, pipelines, run_dir="runs/mine").run()

On a text-to-SQL task (`ragft.SQLTask`), a retrieving pipeline is shown the training
questions closest to the test question with their SQL: `retriever=ragft.SolvedExamples(k=3)`.

A `Pipeline` is its parts (a generator, a template, optionally a retriever and a
fine-tuning spec) and two verbs: `fit` trains its adapter (nothing for an untrained one)
and `predict` answers a task's test examples. Both go through the runner `ragft compare`
uses: the same cache keys, resume, context views and report. Nothing a pipeline is given
is changed: an adapter is attached to a generator only while its pipeline trains or
predicts, and always taken off again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ragft.config import (
    Config,
    DataConfig,
    ExperimentConfig,
    FinetuneConfig,
    GenerationConfig,
    OptimizeConfig,
    PricesConfig,
    SynthConfig,
    check_pairs,
)
from ragft.endpoint import EndpointGenerator
from ragft.errors import ConfigError, InputError
from ragft.parts import Retrieval, SolvedExamples
from ragft.prompts import PromptTemplate, get_template
from ragft.settings import PipelineSettings, check_names, check_pipelines
from ragft.tasks.qa import QATask
from ragft.tasks.sql import SQLTask

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.runner.run import Run
    from ragft.types import Prediction

Task = QATask | SQLTask
"""A task pipelines are compared on."""


class Pipeline:
    """A named pipeline: a generator, a prompt template, optionally a retriever (whose top
    k passages go into the prompt), a fine-tuning spec and `shots` solved training examples,
    or solved examples chosen by prompt optimization (`optimize=ragft.DSPy(...)`). The
    template defaults to `qa-context` with a retriever and `qa` without (text-to-SQL prompts
    are the task's own). A spec with `train_data="synth"` trains on pairs made from the
    training documents (by rule or by the generator), as `synth=ragft.Synth(...)` says
    (default settings without it). `prices` (`ragft.Prices(...)`) replaces the experiment's
    prices for this pipeline (all four fields), e.g. to bill an endpoint's tokens."""

    def __init__(
        self,
        name: str,
        generator: Generator | EndpointGenerator,
        template: str | PromptTemplate | None = None,
        retriever: Retrieval | SolvedExamples | None = None,
        finetune: FinetuneConfig | None = None,
        shots: int = 0,
        optimize: OptimizeConfig | None = None,
        synth: SynthConfig | None = None,
        prices: PricesConfig | None = None,
    ):
        check_names([name])
        who = f"pipeline {name!r}"
        self.own_template = template is not None
        """A template was given (text-to-SQL prompts are the task's own: none may be)."""
        if template is None:
            template = "qa-context" if retriever is not None else "qa"
        try:
            template = get_template(template) if isinstance(template, str) else template.checked()
        except InputError as e:
            raise ConfigError(f"{who}: {e}") from None
        if template.shows_context != (retriever is not None):
            shows = "shows {context}" if template.shows_context else "has no {context}"
            has = "has a retriever" if retriever is not None else "has no retriever"
            raise ConfigError(f"{who}: template {template.name!r} {shows}, but the pipeline {has}")
        if finetune is not None and finetune.records == "raft" and retriever is None:
            raise ConfigError(f"{who}: RAFT records come from the pipeline's own retriever, and it has none")
        if shots < 0:
            raise ConfigError(f"{who}: shots must be 0 or more, got {shots}")
        if synth is not None and (finetune is None or finetune.train_data != "synth"):
            raise ConfigError(f"{who}: synth settings apply to a fine-tuning spec with train_data='synth'")
        if optimize is not None and (finetune is not None or shots):
            raise ConfigError(f"{who}: an optimized prompt chooses its own solved examples, on the base model only")
        self.name = name
        self.generator = generator
        self.template = template
        self.retriever = retriever
        self.finetune = finetune
        self.shots = shots
        self.optimize = optimize
        self.synth = synth
        self.prices = prices

    def __repr__(self) -> str:
        parts = [repr(self.name), self.generator.name, self.template.name]
        if isinstance(self.retriever, SolvedExamples):
            parts.append(f"solved examples k={self.retriever.k}")
        elif self.retriever is not None:
            parts.append(f"{self.retriever.settings.method} k={self.retriever.k}")
        if self.finetune is not None:
            parts.append(self.finetune.method)
        if self.optimize is not None:
            parts.append(f"dspy demos={self.optimize.demos}")
        return f"Pipeline({', '.join(parts)})"

    def resolve(self, config: Config) -> PipelineSettings:
        """This pipeline resolved against an experiment's settings (what the runner runs)."""
        g = self.generator
        if isinstance(g, EndpointGenerator):
            endpoint = dict(endpoint=g.url, endpoint_key_env=g.key_env, endpoint_timeout_s=g.timeout_s)
            models = dataclasses.replace(config.models, generator=g.name, endpoint_retries=g.retries, **endpoint)
        else:
            identity = g.identity()
            models = dataclasses.replace(
                config.models, generator=g.name, dtype=identity["dtype"], device=identity["device"], endpoint=""
            )
        sections: dict[str, object] = {
            "generation": GenerationConfig(max_new_tokens=g.max_new_tokens, batch_size=g.batch_size)
        }
        if isinstance(self.retriever, Retrieval):
            index = self.retriever.index
            models = dataclasses.replace(models, embedder=index.embedder.name, embedder_dtype=index.embedder.dtype)
            sections.update(chunking=index.chunking, retrieval=self.retriever.settings)
        elif isinstance(self.retriever, SolvedExamples):
            embedder = self.retriever.embedder
            models = dataclasses.replace(models, embedder=embedder.name, embedder_dtype=embedder.dtype)
            sections.update(retrieval=self.retriever.settings)
        if self.finetune is not None:
            sections["finetune"] = self.finetune
        if self.optimize is not None:
            sections["optimize"] = self.optimize
        if self.synth is not None:
            sections["synth"] = self.synth
        if self.prices is not None:
            sections["prices"] = self.prices
        settings = dataclasses.replace(config, models=models, pipelines=[], **sections)
        context, trained = self.retriever is not None, self.finetune is not None
        optimized = self.optimize is not None
        return PipelineSettings.of(self.name, self.template, context, self.shots, trained, settings, optimized)

    def fit(self, task: Task, run_dir: str | Path = "runs/pipelines") -> Pipeline:
        """Train this pipeline's adapter (or optimize its prompt) on the task's train split into
        `run_dir` (reused when already made there from the same inputs); nothing for a plain pipeline."""
        if self.finetune is not None or self.optimize is not None:
            run, settings = self._alone(task, run_dir)
            run.fit(settings)
        return self

    def predict(self, task: Task, run_dir: str | Path = "runs/pipelines") -> list[Prediction]:
        """Scored predictions for the task's test examples (training first if needed); cached
        in `run_dir`, so a second call reads them back."""
        from ragft.locks import run_lock

        run, settings = self._alone(task, run_dir)
        with run_lock(run.folder):
            predictions, _ = run.predictions(settings)
        return predictions

    def _alone(self, task: Task, run_dir: str | Path) -> tuple[Run, PipelineSettings]:
        """A run of this pipeline alone in `run_dir`, and its resolved settings."""
        folder = Path(run_dir)
        config, (settings,) = experiment_settings(task, [self], folder, context_views=False)
        return pipelines_run(task, [self], folder, config, [settings]), settings


def experiment_settings(
    task: Task,
    pipelines: Sequence[Pipeline],
    folder: Path,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    seed: int = 0,
    seeds: Sequence[int] = (),
    bootstrap_samples: int = 2000,
    context_views: bool = True,
    general_examples: str | Path | None = None,
    name: str | None = None,
    prices: PricesConfig | None = None,
) -> tuple[Config, list[PipelineSettings]]:
    """The experiment's settings for pipelines built in Python, and each pipeline resolved
    against them, checked by the rules a TOML config's pipelines are checked by."""
    kind = "sql" if isinstance(task, SQLTask) else "qa"
    for p in pipelines:
        _check_fits(p, kind)
    pair_names = [f"{a}:{b}" for a, b in pairs]
    check_pairs(pair_names, [p.name for p in pipelines])
    experiment = ExperimentConfig(
        name=name or folder.name,
        presets=[],
        output_dir=str(folder.parent),
        seed=seed,
        seeds=list(seeds),
        bootstrap_samples=bootstrap_samples,
        general_examples=str(Path(general_examples).resolve()) if general_examples else "",
        context_views=context_views,
        pairs=pair_names,
    )
    config = Config(experiment=experiment, data=DataConfig(kind=kind, examples=task.source))
    if prices is not None:
        config = dataclasses.replace(config, prices=prices)
    first = next((p for p in pipelines if p.retriever is not None), None)
    if first is not None:  # what a pipeline without a retriever is shown in the retrieved-context view
        own = first.resolve(config)
        config = dataclasses.replace(config, models=own.models, chunking=own.chunking, retrieval=own.retrieval)
    g = pipelines[0].resolve(config)  # the experiment's generator: the first pipeline's
    models = dataclasses.replace(config.models, generator=g.models.generator, dtype=g.models.dtype)
    config = dataclasses.replace(config, models=dataclasses.replace(models, device=g.models.device))
    resolved = [p.resolve(config) for p in pipelines]
    check_pipelines(resolved, kind)
    return config, resolved


def _check_fits(pipeline: Pipeline, kind: str) -> None:
    """A pipeline's parts fit the task: passages from an `Index` for QA, solved examples
    (`SolvedExamples`) and the task's own prompts for text-to-SQL."""
    who = f"pipeline {pipeline.name!r}"
    if kind == "sql":
        if isinstance(pipeline.retriever, Retrieval):
            raise ConfigError(
                f"{who}: a text-to-SQL pipeline is shown solved examples, not passages: "
                "retriever=ragft.SolvedExamples(k=...)"
            )
        if pipeline.own_template:
            raise ConfigError(f"{who}: templates apply to qa tasks; text-to-SQL prompts are the task's own")
    elif isinstance(pipeline.retriever, SolvedExamples):
        raise ConfigError(
            f"{who}: solved examples are retrieved for text-to-SQL tasks; index.dense(k=...) retrieves passages"
        )


def pipelines_run(
    task: Task, pipelines: Sequence[Pipeline], folder: Path, config: Config, resolved: list[PipelineSettings]
) -> Run:
    """The runner's run of pipelines built in Python: their own generators, embedders and
    indexes, never loaded again."""
    from ragft.resources import Resources
    from ragft.runner.run import Run

    generators = list({id(p.generator): p.generator for p in pipelines}.values())
    indexes = list(
        {id(p.retriever.index): p.retriever.index for p in pipelines if isinstance(p.retriever, Retrieval)}.values()
    )
    examples = [p.retriever.embedder for p in pipelines if isinstance(p.retriever, SolvedExamples)]
    resources = Resources(generators, [*(i.embedder for i in indexes), *examples], [i.vectors for i in indexes])
    return Run(folder, config, resources, data=task, pipelines=resolved)
