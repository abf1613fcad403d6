"""Pipelines built in Python, and the experiment that compares them.

    pipelines = [
        ragft.Pipeline("prompt", gen, template="qa"),
        ragft.Pipeline("rag", gen, template="qa-context", retriever=index.dense(k=3)),
        ragft.Pipeline("rag+ft", gen, template="qa-context", retriever=index.dense(k=3),
                       finetune=ragft.LoRA(rank=16, records=ragft.RAFT())),
    ]
    report = ragft.Experiment(task, pipelines, run_dir="runs/mine").run()

A `Pipeline` is its parts (a generator, a template, optionally a retriever and a
fine-tuning spec) and two verbs: `fit` trains its adapter (nothing for an untrained one)
and `predict` answers a task's test examples. An `Experiment` runs pipelines through the
same runner as `ragft compare`: the same cache keys, resume, context views and report.
Nothing a pipeline is given is changed: an adapter is attached to a generator only while
its pipeline trains or predicts, and always taken off again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ragft.arms import Arm, check_endpoint, check_names, check_starts
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
from ragft.prompts import PromptTemplate, get_template

if TYPE_CHECKING:
    from ragft.experiment import Run
    from ragft.generation import Generator
    from ragft.parts import Retrieval
    from ragft.results import Report
    from ragft.tasks.qa import QATask
    from ragft.types import Prediction


class Pipeline:
    """A named pipeline: a generator, a prompt template, optionally a retriever (whose top
    k passages go into the prompt), a fine-tuning spec and `shots` solved training examples,
    or solved examples chosen by prompt optimization (`optimize=ragft.DSPy(...)`). A spec
    with `train_data="synth"` trains on pairs made from the training documents (by rule or
    by the generator), as `synth=ragft.Synth(...)` says (default settings without it). `prices`
    (`ragft.Prices(...)`) replaces the experiment's prices for this pipeline (all four
    fields), e.g. to bill an endpoint's tokens."""

    def __init__(
        self,
        name: str,
        generator: Generator | EndpointGenerator,
        template: str | PromptTemplate = "qa",
        retriever: Retrieval | None = None,
        finetune: FinetuneConfig | None = None,
        shots: int = 0,
        optimize: OptimizeConfig | None = None,
        synth: SynthConfig | None = None,
        prices: PricesConfig | None = None,
    ):
        check_names([name])
        who = f"pipeline {name!r}"
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
        if self.retriever is not None:
            parts.append(f"{self.retriever.settings.method} k={self.retriever.k}")
        if self.finetune is not None:
            parts.append(self.finetune.method)
        if self.optimize is not None:
            parts.append(f"dspy demos={self.optimize.demos}")
        return f"Pipeline({', '.join(parts)})"

    def arm(self, config: Config) -> Arm:
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
        if self.retriever is not None:
            index = self.retriever.index
            models = dataclasses.replace(models, embedder=index.embedder.name, embedder_dtype=index.embedder.dtype)
            sections.update(chunking=index.chunking, retrieval=self.retriever.settings)
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
        return Arm(self.name, self.template, context, self.shots, trained, settings, optimized=optimized)

    def fit(self, task: QATask, run_dir: str | Path = "runs/pipelines") -> Pipeline:
        """Train this pipeline's adapter (or optimize its prompt) on the task's train split into
        `run_dir` (reused when already made there from the same inputs); nothing for a plain pipeline."""
        if self.finetune is not None or self.optimize is not None:
            Experiment(task, [self], run_dir, context_views=False).fit(self.name)
        return self

    def predict(self, task: QATask, run_dir: str | Path = "runs/pipelines") -> list[Prediction]:
        """Scored predictions for the task's test examples (training first if needed); cached
        in `run_dir`, so a second call reads them back."""
        predictions, _ = Experiment(task, [self], run_dir, context_views=False).predictions(self.name)
        return predictions


class Experiment:
    """Pipelines compared on one task: the same test examples, scored with bootstrap
    intervals and paired tests between every pair (or the `pairs` named), beside what each
    costs; with `context_views`, every fine-tuned pipeline and its base model are also shown
    no, oracle and retrieved context, and `general_examples` adds the forgetting check.
    `prices` (`ragft.Prices(...)`) turns measured costs into dollars."""

    def __init__(
        self,
        task: QATask,
        pipelines: Sequence[Pipeline],
        run_dir: str | Path = "runs/experiment",
        *,
        pairs: Sequence[tuple[str, str]] = (),
        seed: int = 0,
        seeds: Sequence[int] = (),
        bootstrap_samples: int = 2000,
        context_views: bool = True,
        general_examples: str | Path | None = None,
        name: str | None = None,
        prices: PricesConfig | None = None,
    ):
        check_names([p.name for p in pipelines])
        self.task = task
        self.pipelines = list(pipelines)
        self.folder = Path(run_dir)
        pair_names = [f"{a}:{b}" for a, b in pairs]
        check_pairs(pair_names, [p.name for p in pipelines])
        experiment = ExperimentConfig(
            name=name or self.folder.name,
            variants=[],
            output_dir=str(self.folder.parent),
            seed=seed,
            seeds=list(seeds),
            bootstrap_samples=bootstrap_samples,
            general_examples=str(Path(general_examples).resolve()) if general_examples else "",
            context_views=context_views,
            pairs=pair_names,
        )
        config = Config(experiment=experiment, data=DataConfig(kind="qa", examples=task.source))
        if prices is not None:
            config = dataclasses.replace(config, prices=prices)
        first = next((p for p in self.pipelines if p.retriever is not None), None)
        if first is not None:  # what a pipeline without a retriever is shown in the retrieved-context view
            arm = first.arm(config).config
            config = dataclasses.replace(config, models=arm.models, chunking=arm.chunking, retrieval=arm.retrieval)
        g = self.pipelines[0].arm(config).config  # the experiment's generator: the first pipeline's
        models = dataclasses.replace(config.models, generator=g.models.generator, dtype=g.models.dtype)
        self.config = dataclasses.replace(config, models=dataclasses.replace(models, device=g.models.device))
        self.arms = [p.arm(self.config) for p in self.pipelines]
        for arm in self.arms:
            check_endpoint(arm)
        check_starts(self.arms)

    def _run(self) -> Run:
        from ragft.experiment import Run
        from ragft.resources import Resources

        generators = list({id(p.generator): p.generator for p in self.pipelines}.values())
        indexes = list({id(p.retriever.index): p.retriever.index for p in self.pipelines if p.retriever}.values())
        resources = Resources(generators, [i.embedder for i in indexes], [i.vectors for i in indexes])
        run = Run(self.folder, self.config, resources, data=self.task)
        run.arms = {a.name: a for a in self.arms}
        return run

    def run(self) -> Report:
        """Run every pipeline (reusing whatever this run folder already holds) and report."""
        from ragft.experiment import run_arms
        from ragft.results import Report

        return Report.from_dict(run_arms(self._run(), self.arms), self.folder)

    def _arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def fit(self, name: str) -> dict[str, object]:
        """Train (or find trained) one pipeline's adapter, or optimize its prompt; return what
        the training or the optimization recorded."""
        from ragft.keys import prompt_key
        from ragft.locks import run_lock

        run, arm = self._run(), self._arm(name)
        task = run.task(arm)
        if arm.optimized:
            with run_lock(self.folder):
                key = prompt_key(arm, task, run.generator_identity(arm))
                return run.optimized_prompt(arm, run.generator(arm), key).to_dict()
        with run_lock(self.folder), run.adapted(arm, run.generator(arm)) as t:
            return t

    def predictions(self, name: str) -> tuple[list[Prediction], dict[str, object]]:
        """One pipeline's predictions on the test examples, and what they cost."""
        from ragft.locks import run_lock

        with run_lock(self.folder):
            return self._run().predictions(self._arm(name))
