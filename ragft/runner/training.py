"""A pipeline's adapter: trained into the run folder (resuming an interrupted training),
or loaded when one with the same key is there; attached only inside a `with` block."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ArtifactError
from ragft.finetune.adapter import adapter_manifest, load_adapter, save_adapter
from ragft.finetune.detach import BASE_STASH, detach_adapter
from ragft.models import model_id

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.settings import PipelineSettings
    from ragft.tasks.base import TaskRun


def adapter_dir(run: Path, label: str) -> Path:
    """Where a trained pipeline's adapter lives in the run folder (`rag+ft@seed1` -> adapters/rag_ft_seed1)."""
    return run / "adapters" / label.replace("+", "_").replace("@", "_")


@contextmanager
def adapted(
    folder: Path, pipeline: PipelineSettings, generator: Generator, task: TaskRun, key: str, start: Path | None = None
) -> Iterator[dict[str, Any]]:
    """`generator` with the pipeline's adapter on (trained first where needed, from the
    adapter in `start` if given) inside the block; yields what the training recorded. The
    generator gets its base model back whatever happens, inside the block or during training."""
    base = generator.model
    try:
        generator.model, training = train_or_load_adapter(folder, pipeline, generator, task, key, start)
        yield training
    finally:
        # a LoRA-style adapter wraps the model; a full fine-tune changes it in place, its base stashed
        if generator.model is not base or hasattr(generator.model, BASE_STASH):
            generator.model = detach_adapter(generator.model)


def has_adapter(folder: Path, key: str) -> bool:
    """An adapter trained with this key is saved in `folder`."""
    try:
        return adapter_manifest(folder).get("fingerprint") == key
    except ArtifactError:
        return False


def train_or_load_adapter(
    folder: Path, pipeline: PipelineSettings, generator: Generator, task: TaskRun, key: str, start: Path | None = None
) -> tuple[Any, dict[str, Any]]:
    """Load the pipeline's adapter if one was trained with this key, else train it (resuming
    from its checkpoint after an interruption; going on from the adapter in `start`)."""
    c = pipeline
    base_id = model_id(c.models.generator)
    try:
        manifest = adapter_manifest(folder)
        if manifest.get("fingerprint") == key:
            return load_adapter(generator.model, folder, base_id), manifest["training"]
    except ArtifactError:
        pass  # none, or unreadable: trained again
    checkpoint = folder.with_name(folder.name + ".checkpoint")
    if c.finetune.objective == "sft":
        from ragft.finetune.lora import train_lora

        records = task.train_records(pipeline, generator)
        peft_model, result = train_lora(
            generator.model,
            records,
            c.finetune,
            generator.tokenizer.pad_token_id,
            c.seed,
            checkpoint=checkpoint,
            fingerprint=key,
            start=start,
        )
        n = len(records)
    else:
        from ragft.finetune.preference import train_preference

        rows = task.preference_rows(pipeline)
        peft_model, result = train_preference(generator.model, generator.tokenizer, rows, c.finetune, c.seed, start)
        n = len(rows)
    training = {
        "records": n,
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
    if c.finetune.objective != "sft":
        training.update(objective=c.finetune.objective, **result.preference)
    if start is not None:
        training["init_from"] = c.finetune.init_from
    if is_main_process():
        extra = {"method": c.finetune.method, "fingerprint": key, "training": training, "losses": result.losses}
        try:
            save_adapter(peft_model, folder, base_id, extra)
        except BaseException:
            detach_adapter(peft_model)  # the caller's model goes back as it came
            raise
        shutil.rmtree(checkpoint, ignore_errors=True)
    return peft_model, training


def is_main_process() -> bool:
    """False in the other processes of an `accelerate launch` / torchrun job (they save nothing)."""
    return int(os.environ.get("RANK", "0")) == 0
