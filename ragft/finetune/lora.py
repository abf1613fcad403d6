"""The LoRA training loop, read top to bottom: set up, train, report.

Length-grouped batches keep padding low; the base stays in its loaded dtype (bf16 where
supported) while the adapter weights train in fp32; gradients are clipped; a NaN loss
stops training with the step and the examples of the batch named.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragft.config import FinetuneConfig
from ragft.errors import RagftError
from ragft.finetune.data import IGNORE, SFTRecord
from ragft.io import atomic_dir, write_json_atomic
from ragft.progress import progress


@dataclass
class TrainResult:
    steps: int
    seconds: float
    tokens: int
    """Tokens seen (padding excluded)."""
    padded_tokens: int
    """Tokens processed including padding."""
    losses: list[float] = field(default_factory=list)
    """Mean answer-token loss per optimiser step."""
    truncated: int = 0
    """Records whose context was cut to fit finetune.max_length."""


def lora_config(cfg: FinetuneConfig) -> Any:
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
    )


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort within windows of 16 batches by length, cut into batches, shuffle those."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(records: Sequence[SFTRecord], pad_id: int) -> dict[str, Any]:
    """Right-pad into input_ids, attention_mask and labels tensors."""
    import torch

    width = max(len(r.input_ids) for r in records)
    ids = torch.full((len(records), width), pad_id, dtype=torch.long)
    labels = torch.full((len(records), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(records), width), dtype=torch.long)
    for row, r in enumerate(records):
        n = len(r.input_ids)
        ids[row, :n] = torch.tensor(r.input_ids)
        labels[row, :n] = torch.tensor(r.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def answer_loss(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
    """Mean next-token cross-entropy over answer tokens.

    The output projection runs only at answer positions: with a 49k vocabulary, logits at
    every prompt position would cost a quarter of the compute and most of the memory.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, targets[keep])


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first tenth of the steps, then linear decay to zero."""
    warmup = max(1, total // 10)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def train_lora(
    model: Any,
    records: Sequence[SFTRecord],
    cfg: FinetuneConfig,
    pad_id: int,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
) -> tuple[Any, TrainResult]:
    """Wrap `model` with a fresh LoRA adapter and train it on `records`; return (peft model, result).

    With `checkpoint`, the adapter, optimiser state and progress are saved there every
    `cfg.checkpoint_every` steps, and a later call with the same `fingerprint` resumes from
    the last one: the batch order is replayed from the seed, so the result is the same
    as an uninterrupted run.
    """
    import torch
    from peft import get_peft_model

    if not records:
        raise RagftError("no training records")

    # Set up.
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = get_peft_model(model, lora_config(cfg))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    lengths = [len(r.input_ids) for r in records]
    total = math.ceil(len(records) / cfg.batch_size) * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    device = next(model.parameters()).device
    result = TrainResult(0, 0.0, 0, 0, truncated=sum(r.truncated for r in records))
    if checkpoint is not None:
        resume_checkpoint(Path(checkpoint), fingerprint, named, optimizer, result)
    resumed = result.steps

    # Train.
    model.train()
    start = time.perf_counter() - result.seconds
    bar = progress(total=total, initial=resumed, desc="fine-tuning", unit="step")
    step = 0
    for _epoch in range(cfg.epochs):
        for batch_ids in length_grouped_batches(lengths, cfg.batch_size, rng):
            if step >= total:
                break
            step += 1
            if step <= resumed:
                continue  # done before the interruption; the order above is replayed
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step - 1, total, cfg.learning_rate)
            batch = collate([records[i] for i in batch_ids], pad_id)
            loss = answer_loss(model, **{k: v.to(device) for k, v in batch.items()})
            if not torch.isfinite(loss):
                names = ", ".join(records[i].example_id for i in batch_ids)
                raise RagftError(f"loss became {loss.item()} at step {step} (batch: {names})")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            result.steps = step
            result.losses.append(loss.item())
            result.tokens += int(batch["attention_mask"].sum())
            result.padded_tokens += batch["attention_mask"].numel()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if checkpoint is not None and step % cfg.checkpoint_every == 0 and step < total:
                result.seconds = time.perf_counter() - start
                save_checkpoint(Path(checkpoint), fingerprint, named, optimizer, result)
    bar.close()
    result.seconds = time.perf_counter() - start
    model.eval()
    return model, result


ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def save_checkpoint(
    folder: Path, fingerprint: str, named: list[tuple[str, Any]], optimizer: Any, result: TrainResult
) -> None:
    """Adapter weights, AdamW moments and progress as safetensors + JSON (no pickle)."""
    from safetensors.torch import save_file

    tensors = {f"param.{n}": p.detach().cpu().contiguous() for n, p in named}
    for n, p in named:
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"{key}.{n}"] = value.detach().cpu().contiguous()
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        write_json_atomic(tmp / "progress.json", {"fingerprint": fingerprint, **asdict(result)})


def resume_checkpoint(
    folder: Path, fingerprint: str, named: list[tuple[str, Any]], optimizer: Any, result: TrainResult
) -> None:
    """Restore a checkpoint saved by the same training setup; ignore any other."""
    import json

    import torch
    from safetensors.torch import load_file

    progress_file = folder / "progress.json"
    if not progress_file.is_file():
        return
    saved = json.loads(progress_file.read_text())
    if saved.pop("fingerprint") != fingerprint:
        return
    tensors = load_file(str(folder / "state.safetensors"))
    with torch.no_grad():
        for n, p in named:
            p.copy_(tensors[f"param.{n}"])
            state = {
                key: tensors[f"{key}.{n}"] if key == "step" else tensors[f"{key}.{n}"].to(p.device)
                for key in ADAM_STATE
                if f"{key}.{n}" in tensors
            }
            if state:
                optimizer.state[p] = state
    for key, value in saved.items():
        setattr(result, key, value)
