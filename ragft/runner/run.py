"""Runs an experiment's pipelines over one task as a controlled experiment.

Every pipeline sees the same test examples and machine. Finished predictions are appended
to `predictions/<pipeline>.jsonl` batch by batch, and an interrupted run picks up where it
stopped; indexes, retrieved passages, adapters and predictions are reused when the key
`ragft.keys` derives for them is the one this run would build.

The runner reads a whole `Config` (as do the config loader and the interfaces); each
pipeline carries its own settings, and each part is handed the sections it reads. It
returns the typed `Report` and writes the run folder's data files; drawing report.md and
report.html is the renderers' job (`ragft.render`), called by the interfaces.
"""

from __future__ import annotations

import contextlib
import difflib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.config import Config, check_pairs
from ragft.errors import ConfigError, InputError, NotMade, naming
from ragft.io import read_json, sha256_json, write_json_atomic
from ragft.keys import StageKeys, predictions_key, stage_keys
from ragft.locks import run_lock
from ragft.memory import PeakMemory
from ragft.report.aggregate import StatisticsInputs, clustering, seed_spread, statistics, view_table
from ragft.report.results import Report
from ragft.report.sanity import constant_answer
from ragft.resources import Models, Resources
from ragft.runner.environment import environment
from ragft.runner.forgetting import GeneralSet, forgetting_block
from ragft.runner.prediction import PredictableTask, load_predictions, predict
from ragft.runner.training import adapted, adapter_dir, has_adapter
from ragft.settings import (
    CONTEXTS,
    PipelineSettings,
    TrainedAdapter,
    base_models,
    base_name,
    ladder,
    resolve_pipelines,
    settings_record,
    settings_summary,
)
from ragft.tasks.base import TaskRun
from ragft.tasks.qa import QATask
from ragft.types import Prediction

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.optimize import OptimizedPrompt
    from ragft.tasks.sql import SQLTask


def run_dir_for(config: Config) -> Path:
    return (config.path(config.experiment.output_dir) / config.experiment.name).resolve()


class Run:
    """One experiment in its run folder: a task per retrieval setup, the shared models,
    and every pipeline's predictions by label."""

    def __init__(
        self,
        folder: Path,
        config: Config,
        resources: Resources,
        data: QATask | SQLTask | None = None,
        pipelines: Sequence[PipelineSettings] | None = None,
    ):
        self.folder = folder
        self.config = config
        self.resources = resources
        self._data = data
        self._tasks: dict[str, TaskRun] = {}
        self._by_key: dict[str, tuple[list[Prediction], dict[str, Any]]] = {}
        self._pipelines = {a.name: a for a in pipelines} if pipelines is not None else None
        self.made: set[str] | None = None
        """The pipelines (and base models) whose predictions this run may make; the others'
        are only read where finished (None: every pipeline's may be made)."""

    def pipeline(self, name: str) -> PipelineSettings:
        """A pipeline of this experiment by name (an adapter may start from another's): one
        of `pipelines` where they were given, else the config's."""
        if self._pipelines is None:
            self._pipelines = {a.name: a for a in resolve_pipelines(self.config)}
        if name not in self._pipelines:
            known = ", ".join(self._pipelines)
            raise ConfigError(f"no pipeline {name!r} in this experiment (it has {known})", self.config.source or None)
        return self._pipelines[name]

    def task(self, pipeline: PipelineSettings) -> TaskRun:
        """The task prepared with this pipeline's settings; pipelines whose settings agree share one."""
        c = pipeline
        setup = sha256_json([asdict(c.models), asdict(c.chunking), asdict(c.retrieval), asdict(c.sql)])
        if setup not in self._tasks:
            models = self.models(pipeline)
            if self.config.data.kind == "sql":
                from ragft.tasks.sql import SqlRun

                self._tasks[setup] = SqlRun(self.folder, self.data, c.retrieval, c.sql, models)
            else:
                from ragft.tasks.qa_run import QaRun

                self._tasks[setup] = QaRun(self.folder, self.data, c.chunking, c.retrieval, models)
        return self._tasks[setup]

    @property
    def data(self) -> Any:
        """The task's documents and examples, loaded once for every pipeline."""
        return self.read_inputs()

    def read_inputs(self) -> QATask | SQLTask:
        """Read and check the task's input files (every line of them): done before any model loads."""
        if self._data is None:
            self._data = sql_task(self.config) if self.config.data.kind == "sql" else qa_task(self.config)
        return self._data

    def models(self, pipeline: PipelineSettings) -> Models:
        """The models a pipeline's settings name."""
        return Models(self.resources, pipeline.models, pipeline.generation, pipeline.seed)

    def keys(self, pipeline: PipelineSettings, trained: PipelineSettings | None = None) -> StageKeys:
        """Every stage key of a pipeline (or of another context view of `trained`)."""
        owner = self.with_checker(trained or pipeline)
        pipeline, trained = (pipeline, owner) if trained is not None else (owner, None)
        return stage_keys(pipeline, self.task(owner), self.generator_identity(owner), trained, self.start_key(owner))

    def with_checker(self, pipeline: PipelineSettings) -> PipelineSettings:
        """The pipeline with the adapter of the pipeline that checks its synthetic pairs
        (`synth.checker`), which its synthesis is keyed by and asks the round trips with."""
        name = pipeline.synth.checker
        if not name or pipeline.checker is not None:
            return pipeline
        key = self.adapter_key(self.pipeline(name))
        return replace(pipeline, checker=TrainedAdapter(name, key, adapter_dir(self.folder, name)))

    def start(self, pipeline: PipelineSettings) -> PipelineSettings | None:
        """The pipeline whose adapter this one goes on training (`finetune.init_from`), if any."""
        name = pipeline.finetune.init_from if pipeline.trained else ""
        return self.pipeline(name) if name else None

    def start_key(self, pipeline: PipelineSettings) -> str | None:
        start = self.start(pipeline)
        return self.keys(start).adapter if start is not None else None

    def adapter_key(self, pipeline: PipelineSettings) -> str:
        """The key of a trained pipeline's adapter."""
        key = self.keys(pipeline).adapter
        assert key is not None, f"{pipeline.name} trains no adapter"
        return key

    @contextlib.contextmanager
    def adapted(
        self, pipeline: PipelineSettings, generator: Generator, folder: Path | None = None
    ) -> Iterator[dict[str, Any]]:
        """`generator` with the pipeline's adapter on inside the block (trained first where
        needed: after the adapter it starts from and the adapter that checks its synthetic
        pairs, which are trained or found first). The adapter lives in the run folder's
        `adapters/<pipeline>`, or in `folder` (a sweep's settings)."""
        pipeline = self.with_checker(pipeline)
        start = self.start(pipeline)
        folder, key = folder or adapter_dir(self.folder, pipeline.name), self.adapter_key(pipeline)
        if not has_adapter(folder, key):
            needed = [(start, "starts from it")] if start is not None else []
            if pipeline.checker is not None:
                needed.append((self.pipeline(pipeline.checker.pipeline), "synth.checker"))
            for other, why in needed:
                with naming(f"pipeline {other.name!r} ({pipeline.name!r} {why})"):
                    with self.adapted(other, generator):
                        pass  # trained (or found trained) and taken off again
        begin = adapter_dir(self.folder, start.name) if start is not None else None
        with adapted(folder, pipeline, generator, self.task(pipeline), key, begin) as training:
            yield training

    def generator_identity(self, pipeline: PipelineSettings) -> dict[str, Any]:
        return self.resources.generator_identity(pipeline.models)

    def generator(self, pipeline: PipelineSettings) -> Generator:
        return self.models(pipeline).generator()

    def optimized_prompt(self, pipeline: PipelineSettings, generator: Generator, key: str) -> OptimizedPrompt:
        """An optimized pipeline's prompt: read back when made with this key, else optimized now."""
        from ragft.optimize import optimized_prompt, prompt_dir
        from ragft.tasks.qa_run import QaRun

        task = self.task(pipeline)
        if not isinstance(task, QaRun):
            raise ConfigError(f"pipeline {pipeline.name!r}: prompt optimization runs on qa tasks")
        return optimized_prompt(
            prompt_dir(self.folder, pipeline.name),
            generator,
            pipeline.template,
            lambda: task.optimizer_questions(pipeline),
            task.primary_score,
            pipeline.optimize,
            pipeline.context,
            key,
        )

    def fit(self, pipeline: PipelineSettings) -> dict[str, Any]:
        """Train (or find trained) a pipeline's adapter, or optimize its prompt, holding the run
        folder; return what the training or the optimization recorded."""
        with run_lock(self.folder):
            if pipeline.optimized:
                key = self.keys(pipeline).prompt
                assert key is not None
                return self.optimized_prompt(pipeline, self.generator(pipeline), key).to_dict()
            with self.adapted(pipeline, self.generator(pipeline)) as training:
                return training

    def predictions(
        self,
        pipeline: PipelineSettings,
        label: str | None = None,
        trained: PipelineSettings | None = None,
        questions: GeneralSet | None = None,
    ) -> tuple[list[Prediction], dict[str, Any]]:
        """Predictions and costs of a pipeline: read back when finished, else made now.

        `label` names its files when it is not the pipeline's own name (another context
        view, another seed); `trained` is the pipeline whose adapter a context view uses;
        `questions`, the forgetting check's general questions when they are asked instead
        of the task's test examples. Predictions with the same key are made once, whatever
        their label.
        """
        owner = trained or pipeline
        label = label or pipeline.name
        keys = self.keys(pipeline, trained)
        key = keys.predictions
        if questions is not None:
            key = predictions_key(pipeline, questions, self.generator_identity(owner), keys.adapter, None)
        if key in self._by_key:
            return self._by_key[key]
        task = self.task(owner)
        asked: PredictableTask = questions or task
        path = self.folder / "predictions" / f"{label}.jsonl"
        costs_path = path.with_suffix(".costs.json")
        makes = self.made is None or owner.name.split("@")[0] in self.made
        done = load_predictions(path, key, set_aside=makes)
        if all(i in done for i in asked.test_ids):
            saved = read_json(costs_path) if costs_path.is_file() else {}
            # the general questions report no costs; a pipeline only read keeps its answers whatever its costs file says
            if saved.get("fingerprint") == key or questions is not None or not makes:
                kept = saved["costs"] if saved.get("fingerprint") == key else {}
                result = [done[i] for i in asked.test_ids], kept
                self._by_key[key] = result
                return result

        if not makes:
            raise NotMade(f"{label}: no finished predictions in {self.folder} with the config's keys")
        costs: dict[str, Any] = {"resumed_predictions": len(done)} if done else {}
        generator = self.generator(owner)
        with PeakMemory() as memory:
            if owner.trained:
                folder = adapter_dir(self.folder, owner.name)
                with self.adapted(owner, generator) as training:
                    costs["training"] = training
                    costs["adapter_bytes"] = sum(f.stat().st_size for f in folder.iterdir())
                    data = task.training_data(self.with_checker(owner))
                    if data is not None:
                        costs["synthesis"] = data
                    predict(path, label, pipeline, generator, asked, done, key)
            elif owner.optimized:
                assert keys.prompt is not None
                prompt = self.optimized_prompt(owner, generator, keys.prompt)
                costs["optimization"] = {**prompt.to_dict(), "demos": len(prompt.demos)}
                predict(path, label, pipeline.with_demos(prompt.demos), generator, asked, done, key)
            else:
                predict(path, label, pipeline, generator, asked, done, key)
        costs["peak_rss_bytes"] = memory.peak
        if memory.gpu_peak is not None:
            costs["peak_gpu_bytes"] = memory.gpu_peak
        costs["wall_seconds"] = memory.seconds
        write_json_atomic(costs_path, {"fingerprint": key, "costs": costs})
        result = [done[i] for i in asked.test_ids], costs
        self._by_key[key] = result
        return result


def run_pipelines(run: Run, pipelines: list[PipelineSettings], only: Sequence[str] = ()) -> Report:
    """Run the pipelines on the run's task and return the report (its data files written to
    the run folder; the renderers draw report.md and report.html from what this returns).

    With `only`, just the pipelines named there are run; each other pipeline is reported
    where the run folder holds its finished predictions under the keys it has now, and left
    out (and named in the report) where not. Every input file is read and checked before any
    model loads; the run folder is held against other processes while the run writes to it."""
    config = run.config
    if only:
        names = [p.name for p in pipelines]
        for name in only:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (it has {', '.join(names)})"
                raise ConfigError(f"--pipeline {name!r}: no such pipeline in the config{hint}", config.source or None)
        named = [p for p in pipelines if p.name in only]
        run.made = set(only) | set(base_models(named, config.models.generator))
    pairs = check_pairs(config.experiment.pairs, [p.name for p in pipelines], config.source or None)
    run.read_inputs()
    general = None
    if config.experiment.general_examples and any(p.trained for p in pipelines):
        general = GeneralSet(config.path(config.experiment.general_examples))
    with run_lock(run.folder):
        return _run_held(run, pipelines, pairs, general)


def _run_held(
    run: Run, pipelines: list[PipelineSettings], pairs: list[tuple[str, str]], general: GeneralSet | None
) -> Report:
    config, folder = run.config, run.folder
    e = config.experiment
    trained = [p for p in pipelines if p.trained]
    env = environment()
    write_json_atomic(folder / "config.json", config.to_dict())
    write_json_atomic(folder / "environment.json", env)
    write_json_atomic(folder / "pipelines.json", {p.name: settings_record(p) for p in pipelines})

    costs: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[Prediction]] = {}
    seeds = [e.seed, *(s for s in dict.fromkeys(e.seeds) if s != e.seed)]
    seeded: dict[str, list[list[Prediction]]] = {}
    left_out = []
    for p in pipelines:
        with naming(f"pipeline {p.name!r}"):
            try:
                made = run.predictions(p)
                runs = [run.predictions(p.with_seed(s))[0] for s in seeds[1:]] if p.trained else []
            except NotMade:
                left_out.append(p.name)
                continue
            except (ConfigError, InputError):  # its inputs are gone: reported where the run makes it
                if run.made is None or p.name in run.made:
                    raise
                left_out.append(p.name)
                continue
            predictions[p.name], costs[p.name] = made
            if runs:
                seeded[p.name] = [made[0], *runs]
    if left_out:  # pipelines.json keeps them all: a reported one may start from or be checked by them
        pipelines = [p for p in pipelines if p.name not in left_out]
        trained = [p for p in pipelines if p.trained]
    pairs = [(a, b) for a, b in pairs if a in predictions and b in predictions]

    first = next((p for p in pipelines if p.context), pipelines[0])
    task = run.task(first)
    groups, grouped_by = task.groups()
    inputs = StatisticsInputs(
        samples=e.bootstrap_samples,
        seed=e.seed,
        metrics=list(task.metrics),
        pairs=pairs,
        groups=groups,
        grouped_by=grouped_by,
        seeds={name: seeds for name in seeded},
        trained=[p.name for p in trained],
        prices={p.name: asdict(p.prices) for p in pipelines},
        endpoints=[p.name for p in pipelines if p.models.endpoint],
    )
    baseline = constant_answer(task.train_answers(), task.test_ids, task.score)
    report = {
        "name": e.name,
        "generator": config.models.generator,
        "embedder": config.models.embedder,
        "test_examples": len(task.test_ids),
        "metric_names": list(task.metrics),
        "retrieval": task.summary(retrieves=bool(first.context)),
        **statistics(predictions, costs, inputs, seeded, baseline),
        "statistics_inputs": asdict(inputs),
        "environment": env,
    }
    for p in pipelines:
        report["pipelines"][p.name]["settings"] = settings_summary(p)
    if e.context_views and trained:
        views = context_views(run, pipelines)
        labels = clustering(task.test_ids, groups, grouped_by)["labels"]
        report["context_views"] = view_table(views, task.metrics, e.bootstrap_samples, e.seed, task.oracle, labels)
    if general is not None:
        report["forgetting"] = forgetting(run, trained, general)
    errors = {v: dict(Counter(p.error for p in preds if p.error)) for v, preds in predictions.items()}
    if any(errors.values()):
        report["errors"] = errors
    if seeded:
        report["seed_spread"] = seed_spread({n: dict(zip(seeds, runs)) for n, runs in seeded.items()}, task.metrics)
    passages: dict[str, str] = {}
    for task in {id(t): t for t in map(run.task, pipelines)}.values():  # pipelines may share a task
        passages.update(task.passages())
    if left_out:
        report["left_out"] = left_out
    write_json_atomic(folder / "report.json", report)
    return Report.from_dict(report, folder, predictions, passages)


def context_views(run: Run, pipelines: list[PipelineSettings]) -> dict[str, dict[str, list[Prediction]]]:
    """The base model and every fine-tuned pipeline, each shown no context, the oracle
    context and retrieved context: whether retrieval helps or hurts a tuned model.

    A view with the same key as a pipeline already run (`prompt` is the base with no
    context) reuses its predictions; the others are made and cached like any pipeline.
    """
    models = {**base_models(pipelines, run.config.models.generator), **{p.name: p for p in pipelines if p.trained}}
    views: dict[str, dict[str, list[Prediction]]] = {}
    for name, model in models.items():
        trained = model if model.trained else None
        try:
            for context in CONTEXTS:
                with naming(f"context view {name}@{context}"):
                    view = model.with_context(context)
                    views.setdefault(name, {})[context], _ = run.predictions(view, f"{name}@{context}", trained)
        except NotMade:  # a pipeline this run only reads, whose views were not made
            views.pop(name, None)
    return views


def forgetting(run: Run, trained: list[PipelineSettings], general: GeneralSet) -> dict[str, Any]:
    """The forgetting check: each base model and each fine-tuned pipeline answer the general
    questions without context (cached like any pipeline's predictions, under
    `predictions/general/`), and each tuned model is compared with its base."""
    generator = run.config.models.generator
    bases = base_models(trained, generator)
    answers: dict[str, list[Prediction]] = {}
    base_of: dict[str, str] = {}
    for name, model in [*bases.items(), *((p.name, p) for p in trained)]:
        view = model.with_context("none")
        owner = model if model.trained else None
        try:
            answers[name], _ = run.predictions(view, f"general/{name}", owner, questions=general)
        except NotMade:  # a pipeline this run only reads, whose answers were not made
            continue
        if model.trained and base_name(model, generator) in answers:
            base_of[name] = base_name(model, generator)
    e = run.config.experiment
    return forgetting_block(general, answers, base_of, e.bootstrap_samples, e.seed)


def plan(config: Config, run_dir: str | Path | None = None, resources: Resources | None = None) -> dict[str, Any]:
    """Every pipeline's stage keys (`ragft.keys.StageKeys`), computed without loading a model:
    what a run of this config would build or reuse."""
    folder = Path(run_dir) if run_dir is not None else run_dir_for(config)
    run = Run(folder, config, resources or Resources())
    return {p.name: run.keys(p).as_dict() for p in resolve_pipelines(config)}


def finetune(config: Config, name: str, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train (or find already trained) one trained pipeline's adapter in the run folder,
    where `compare` then reuses it; return what the training recorded.

    Safe under `accelerate launch` with several processes: the main process prepares the
    task (index, retrieval caches) before the others read it, all of them train together,
    and only the main process writes the adapter.
    """
    import torch
    from accelerate import PartialState

    pipeline = trained_pipeline(config, name)
    folder = Path(run_dir) if run_dir is not None else run_dir_for(config)
    state = PartialState(cpu=not torch.cuda.is_available())
    run = Run(folder, config, Resources())
    with run_lock(folder) if state.is_main_process else contextlib.nullcontext():
        return _finetune_held(state, run, pipeline)


def _finetune_held(state: Any, run: Run, pipeline: PipelineSettings) -> dict[str, Any]:
    folder, config = run.folder, run.config
    with state.main_process_first():
        task = run.task(pipeline)
        task.prepare(pipeline)  # the main process writes the index; the others then read it
    if state.is_main_process:
        write_json_atomic(folder / "config.json", config.to_dict())
    generator = run.generator(pipeline)
    with naming(f"pipeline {pipeline.name!r}"), run.adapted(pipeline, generator) as training:
        state.wait_for_everyone()
    return training


def trained_pipeline(config: Config, name: str) -> PipelineSettings:
    """The config's pipeline of that name, which must train an adapter."""
    pipelines = {p.name: p for p in resolve_pipelines(config)}
    if name in pipelines and pipelines[name].trained:
        return pipelines[name]
    if name in ("ft", "rag+ft"):
        return ladder(config, [name])[0]
    trained = [n for n, p in pipelines.items() if p.trained] or ["ft", "rag+ft"]
    raise ConfigError(f"{name!r} is not a trained pipeline of this config (trained: {', '.join(trained)})")


def qa_task(config: Config) -> QATask:
    """The QA task `config.data` describes."""
    from ragft.corpus.loaders import JsonlFields, load_corpus

    d = config.data
    corpus_path, examples = _required_path(config, "corpus"), _required_path(config, "examples")
    corpus = load_corpus(corpus_path, fields=JsonlFields(d.text_field, d.id_field), skip_bad=d.skip_bad)
    return QATask.from_jsonl(examples, corpus, d.test_limit, d.train_limit)


def sql_task(config: Config) -> SQLTask:
    """The text-to-SQL task `config.data` and `config.sql` describe: a Spider folder, or a
    JSONL of pairs over the SQLite file `sql.database`."""
    from ragft.tasks.sql import SQLTask

    d, database, seed = config.data, config.sql.database, config.experiment.seed
    examples = _required_path(config, "examples")
    if examples.is_dir():
        return SQLTask.from_spider(examples, d.test_limit, d.train_limit, seed)
    if not database:
        raise InputError("sql.database must name the SQLite file the examples ask about", examples)
    return SQLTask.from_sqlite(config.path(database), examples, d.test_limit, d.train_limit, seed)


_DATA_HELP = {
    "corpus": "the documents to retrieve from: a folder, a BEIR folder, a JSONL or a SQuAD JSON file",
    "examples": "the questions to train and test on: a JSONL file (or a SQuAD JSON file, or a Spider folder)",
}


def _required_path(config: Config, key: str) -> Path:
    """A data path the task cannot run without; unset is an error naming the key, never the config's folder."""
    value = getattr(config.data, key)
    if not value.strip():
        error = ConfigError(f"data.{key} is not set; it names {_DATA_HELP[key]}", config.source or None)
        error.key = f"data.{key}"
        raise error
    path = config.path(value)
    if not path.exists():
        raise ConfigError(f"data.{key}: {path} does not exist", config.source or None)
    return path


def load_task(run: Path, config: Config, resources: Resources) -> TaskRun:
    """The task `data.kind` names, prepared in the run folder with these settings."""
    return Run(run, config, resources).task(ladder(config, ["prompt"])[0])
