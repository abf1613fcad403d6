"""Runs the ladder's variants over one task as a controlled experiment.

Every variant sees the same test examples, base model, decoding and machine. Finished
predictions are appended to `predictions/<variant>.jsonl` batch by batch, and an
interrupted run picks up where it stopped; adapters and the index are reused when their
manifests match what this run would build.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ragft.arms import ARMS, CONTEXTS, Arm, with_context
from ragft.config import FINETUNE_RUN_ONLY, Config
from ragft.errors import ArtifactError, ConfigError
from ragft.finetune.adapter import adapter_manifest, detach_adapter, load_adapter, save_adapter
from ragft.generation import Generator
from ragft.io import (
    append_jsonl,
    read_json,
    read_jsonl,
    sha256_json,
    write_json_atomic,
    write_text_atomic,
)
from ragft.models import model_id
from ragft.monitor import PeakMemory
from ragft.progress import progress
from ragft.report import build_report, environment, seed_spread, view_table, write_report
from ragft.retrieval import Embedder
from ragft.runs import prediction_from_row
from ragft.tasks.base import TaskRun
from ragft.types import Prediction


def run_dir_for(config: Config) -> Path:
    return (config.path(config.experiment.output_dir) / config.experiment.name).resolve()


class Resources:
    """The models a run shares, loaded on first use: a re-run with everything cached
    loads neither. Passing them in (tests, notebooks) skips loading altogether."""

    def __init__(self, config: Config, generator: Generator | None = None, embedder: Embedder | None = None):
        self.config = config
        if generator is not None:
            self.generator = generator
        if embedder is not None:
            self.embedder = embedder

    @cached_property
    def generator(self) -> Generator:
        c = self.config
        return Generator.load(
            c.models.generator,
            c.models.dtype,
            batch_size=c.generation.batch_size,
            max_new_tokens=c.generation.max_new_tokens,
            seed=c.experiment.seed,
        )

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(self.config.models.embedder, dtype=self.config.models.embedder_dtype)


def compare(
    config: Config,
    run_dir: str | Path | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Run every configured variant and return the report (also written to the run folder).

    Whatever a previous run of the same settings finished (index, retrieval, adapters,
    predictions) is reused; an interrupted run continues where it stopped.
    """
    run = Path(run_dir) if run_dir is not None else run_dir_for(config)
    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / "config.json", config.to_dict())
    write_json_atomic(run / "environment.json", environment())
    resources = Resources(config, generator, embedder)
    task = load_task(run, config, resources)

    costs: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[Prediction]] = {}
    spread: dict[str, dict[int, list[Prediction]]] = {}
    for variant in config.experiment.variants:
        predictions[variant], costs[variant] = _variant(run, variant, config, resources, task)
        extra = [s for s in dict.fromkeys(config.experiment.seeds) if s != config.experiment.seed]
        if ARMS[variant].trained and extra:
            spread[variant] = {config.experiment.seed: predictions[variant]}
            for seed in extra:
                seeded = replace(config, experiment=replace(config.experiment, seed=seed))
                spread[variant][seed], _ = _variant(
                    run, variant, seeded, resources, task, label=f"{variant}@seed{seed}"
                )

    retrieval = task.summary(run)
    report = build_report(config, predictions, costs, retrieval, task.metrics)
    if config.experiment.context_views and any(ARMS[v].trained for v in config.experiment.variants):
        views = context_views(run, config, resources, task, predictions)
        e = config.experiment
        report["context_views"] = view_table(views, task.metrics, e.bootstrap_samples, e.seed, task.oracle)
    if config.experiment.general_examples and any(ARMS[v].trained for v in config.experiment.variants):
        from ragft.forgetting import GeneralSet, forgetting

        general = GeneralSet(config.path(config.experiment.general_examples))
        report["forgetting"] = forgetting(run, config, resources, task, general)
    errors = {v: dict(Counter(p.error for p in preds if p.error)) for v, preds in predictions.items()}
    if any(errors.values()):
        report["errors"] = errors
    if spread:
        report["seed_spread"] = seed_spread(spread, task.metrics)
    write_report(run, report, predictions, task.passages())
    if config.tracking.mlflow_uri:
        from ragft.tracking import log_to_mlflow

        uri = config.tracking.mlflow_uri
        report["mlflow_run_id"] = log_to_mlflow(uri, config.tracking.mlflow_experiment, run, config, report)
        write_json_atomic(run / "report.json", report)
    return report


def adapter_fingerprint(variant: str, arm: Arm, config: Config, task: TaskRun) -> str:
    """Everything a variant's adapter depends on (not decoding, not the context it is scored with)."""
    ft = {k: v for k, v in asdict(config.finetune).items() if k not in FINETUNE_RUN_ONLY}
    return sha256_json(
        {
            "variant": variant,
            "arm": asdict(arm),
            "generator": model_id(config.models.generator),
            "dtype": config.models.dtype,
            "finetune": ft,
            "train_limit": config.data.train_limit,
            "seed": config.experiment.seed,
            "task": task.training_identity(arm),
        }
    )


def predictions_fingerprint(arm: Arm, adapter: str | None, config: Config, task: TaskRun) -> str:
    """Everything a variant's predictions depend on; a change re-runs only that variant."""
    return sha256_json(
        {
            "arm": asdict(arm),
            "task": task.identity(arm),
            "generator": model_id(config.models.generator),
            "dtype": config.models.dtype,
            "generation": asdict(config.generation),
            "adapter": adapter,
        }
    )


def _variant(
    run: Path,
    variant: str,
    config: Config,
    resources: Resources,
    task: TaskRun,
    label: str | None = None,
    context: str | None = None,
) -> tuple[list[Prediction], dict[str, Any]]:
    """Predictions and costs of one variant: read back when finished, else made now.

    `label` names its files when one variant runs more than once (another training seed);
    `context` shows the variant's model another context than its own (none, oracle,
    retrieved) for the three-way view, with the same adapter.
    """
    trained_arm = ARMS[variant]
    arm = with_context(trained_arm, context) if context else trained_arm
    label = label or variant
    adapter_fp = adapter_fingerprint(variant, trained_arm, config, task) if arm.trained else None
    fingerprint = predictions_fingerprint(arm, adapter_fp, config, task)
    path = run / "predictions" / f"{label}@{context}.jsonl" if context else run / "predictions" / f"{label}.jsonl"
    costs_path = path.with_suffix(".costs.json")
    done = load_predictions(path, fingerprint)
    if all(i in done for i in task.test_ids) and costs_path.is_file():
        saved = read_json(costs_path)
        if saved.get("fingerprint") == fingerprint:
            return [done[i] for i in task.test_ids], saved["costs"]

    costs: dict[str, Any] = {"resumed_predictions": len(done)} if done else {}
    generator = resources.generator
    with PeakMemory() as memory:
        if arm.trained:
            with adapted(run, label, trained_arm, config, resources, task, adapter_fp) as training:
                costs["training"] = training
                costs["adapter_bytes"] = sum(f.stat().st_size for f in adapter_dir(run, label).iterdir())
                predict(path, variant, arm, generator, task, done, fingerprint)
        else:
            predict(path, variant, arm, generator, task, done, fingerprint)
    costs["peak_rss_bytes"] = memory.peak
    if memory.gpu_peak is not None:
        costs["peak_gpu_bytes"] = memory.gpu_peak
    costs["wall_seconds"] = memory.seconds
    write_json_atomic(costs_path, {"fingerprint": fingerprint, "costs": costs})
    return [done[i] for i in task.test_ids], costs


def context_views(
    run: Path,
    config: Config,
    resources: Resources,
    task: TaskRun,
    predictions: dict[str, list[Prediction]],
) -> dict[str, dict[str, list[Prediction]]]:
    """The base model and every fine-tuned variant, each shown no context, the oracle context
    and retrieved context: whether retrieval helps or hurts a tuned model.

    Views that a configured variant already is (`prompt` is the base with no context) reuse
    its predictions; the others are made and cached like any variant.
    """
    models = {"base": ("prompt", "rag")}  # the base model's views come from untrained arms
    models.update({v: (v,) for v in config.experiment.variants if ARMS[v].trained})
    views: dict[str, dict[str, list[Prediction]]] = {}
    for model, variants in models.items():
        views[model] = {}
        for context in CONTEXTS:
            own = next((v for v in variants if ARMS[v].view == context), None)
            if own is not None and own in predictions:
                views[model][context] = predictions[own]
            elif own is not None:
                views[model][context], _ = _variant(run, own, config, resources, task)
            else:
                views[model][context], _ = _variant(run, variants[-1], config, resources, task, context=context)
    return views


def predict(
    path: Path,
    variant: str,
    arm: Arm,
    generator: Generator,
    task: TaskRun,
    done: dict[str, Prediction],
    fingerprint: str,
) -> None:
    """Generate the batches not yet in `path`, appending each batch when it finishes.

    Batches are planned over the whole test set, so a resumed run regenerates exactly the
    batches an uninterrupted one would have; `done` is filled in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = task.test_ids
    prompts = task.prompts(arm, generator)
    plan = generator.plan(prompts)
    todo = [batch for batch in plan if not all(ids[i] in done for i in batch)]
    bar = progress(total=len(ids), initial=len(ids) - sum(map(len, todo)), desc=f"{variant}: answering", unit="q")
    for batch in todo:
        rows = []
        for i, g in zip(batch, generator.generate_batch([prompts[i] for i in batch])):
            scores, error = task.score(i, g.text)
            p = Prediction(
                ids[i],
                variant,
                prompts[i],
                g.text,
                task.answers(i),
                task.retrieved(arm, i),
                scores,
                g.prompt_tokens,
                g.completion_tokens,
                g.seconds,
                error,
            )
            done[ids[i]] = p
            rows.append({"fingerprint": fingerprint, **asdict(p)})
        append_jsonl(path, rows)
        bar.update(len(batch))
    bar.close()


def load_predictions(path: Path, fingerprint: str) -> dict[str, Prediction]:
    """Predictions already made with the same fingerprint; stale files are set aside.

    A line cut short by a kill mid-write is dropped (its batch is generated again).
    """
    if not path.exists():
        return {}
    rows = [row for _, row in read_jsonl(path, torn_tail_ok=True)]
    if any(row.get("fingerprint") != fingerprint for row in rows):
        path.replace(path.with_suffix(".stale.jsonl"))
        return {}
    if not path.read_bytes().endswith(b"\n"):  # drop the torn line before appending again
        write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return {row["example_id"]: prediction_from_row(row) for row in rows}


def adapter_dir(run: Path, label: str) -> Path:
    """Where a fine-tuned variant's adapter lives in the run folder (`rag+ft@seed1` -> adapters/rag_ft_seed1)."""
    return run / "adapters" / label.replace("+", "_").replace("@", "_")


@contextmanager
def adapted(
    run: Path, label: str, arm: Arm, config: Config, resources: Resources, task: TaskRun, fingerprint: str
) -> Iterator[dict[str, Any]]:
    """The generator's model with the variant's adapter on (trained first where needed) inside
    the block, and taken off after it; yields what the training recorded."""
    generator = resources.generator
    folder = adapter_dir(run, label)
    generator.model, training = train_or_load_adapter(folder, arm, config, resources, task, fingerprint)
    try:
        yield training
    finally:
        generator.model = detach_adapter(generator.model)


def train_or_load_adapter(
    folder: Path, arm: Arm, config: Config, resources: Resources, task: TaskRun, fingerprint: str
) -> tuple[Any, dict[str, Any]]:
    """Load the variant's adapter if one was trained with this fingerprint, else train it
    (resuming from its checkpoint after an interruption)."""
    generator = resources.generator
    base_id = model_id(config.models.generator)
    try:
        manifest = adapter_manifest(folder)
        if manifest.get("fingerprint") == fingerprint:
            return load_adapter(generator.model, folder, base_id), manifest["training"]
    except ArtifactError:
        pass
    from ragft.finetune.lora import train_lora

    records = task.train_records(arm, generator, config)
    checkpoint = folder.with_name(folder.name + ".checkpoint")
    peft_model, result = train_lora(
        generator.model,
        records,
        config.finetune,
        generator.tokenizer.pad_token_id,
        config.experiment.seed,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
    )
    training = {
        "records": len(records),
        "steps": result.steps,
        "seconds": result.seconds,
        "tokens": result.tokens,
        "padding_fraction": 1 - result.tokens / max(1, result.padded_tokens),
        "first_loss": result.losses[0],
        "last_loss": sum(result.losses[-5:]) / len(result.losses[-5:]),
        "truncated_records": result.truncated,
    }
    if result.validation:
        training.update(validation=result.validation, best_step=result.best_step, stopped_early=result.stopped_early)
    if is_main_process():
        extra = {"method": config.finetune.method, "fingerprint": fingerprint, "training": training}
        extra["losses"] = result.losses
        save_adapter(peft_model, folder, base_id, extra)
        shutil.rmtree(checkpoint, ignore_errors=True)
    return peft_model, training


def is_main_process() -> bool:
    """False in the other processes of an `accelerate launch` / torchrun job (they save nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


def finetune(config: Config, variant: str, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train (or find already trained) one fine-tuned variant's adapter in the run folder,
    where `compare` then reuses it; return what the training recorded.

    Safe under `accelerate launch` with several processes: the main process prepares the
    task (index, retrieval caches) before the others read it, all of them train together,
    and only the main process writes the adapter.
    """
    import torch
    from accelerate import PartialState

    if variant not in ARMS or not ARMS[variant].trained:
        raise ConfigError(f"variant must be a fine-tuned arm (ft or rag+ft), got {variant!r}")
    run = Path(run_dir) if run_dir is not None else run_dir_for(config)
    state = PartialState(cpu=not torch.cuda.is_available())
    resources = Resources(config)
    with state.main_process_first():
        run.mkdir(parents=True, exist_ok=True)
        task = load_task(run, config, resources)
    if state.is_main_process:
        write_json_atomic(run / "config.json", config.to_dict())
    arm = ARMS[variant]
    fingerprint = adapter_fingerprint(variant, arm, config, task)
    _, training = train_or_load_adapter(adapter_dir(run, variant), arm, config, resources, task, fingerprint)
    state.wait_for_everyone()
    return training


def load_task(run: Path, config: Config, resources: Resources) -> TaskRun:
    """The task `data.kind` names, prepared in the run folder."""
    if config.data.kind == "sql":
        from ragft.sql.run import SqlRun

        return SqlRun(run, config, resources)
    from ragft.tasks.qa_run import QaRun

    return QaRun(run, config, resources)
