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
from dataclasses import dataclass, field
from typing import Any

from ragft.config import FinetuneConfig
from ragft.errors import RagftError
from ragft.finetune.data import IGNORE, SFTRecord
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


def train_lora(model: Any, records: Sequence[SFTRecord], cfg: FinetuneConfig, pad_id: int, seed: int = 0) -> tuple[Any, TrainResult]:
    """Wrap `model` with a fresh LoRA adapter and train it on `records`; return (peft model, result)."""
    import torch
    from peft import get_peft_model

    if not records:
        raise RagftError("no training records")

    # Set up.
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = get_peft_model(model, lora_config(cfg))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    lengths = [len(r.input_ids) for r in records]
    steps_per_epoch = math.ceil(len(records) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    device = next(model.parameters()).device
    result = TrainResult(0, 0.0, 0, 0, truncated=sum(r.truncated for r in records))

    # Train.
    model.train()
    start = time.perf_counter()
    bar = progress(total=total, desc="fine-tuning", unit="step")
    for _epoch in range(cfg.epochs):
        for batch_ids in length_grouped_batches(lengths, cfg.batch_size, rng):
            if result.steps >= total:
                break
            batch = collate([records[i] for i in batch_ids], pad_id)
            loss = answer_loss(model, **{k: v.to(device) for k, v in batch.items()})
            if not torch.isfinite(loss):
                names = ", ".join(records[i].example_id for i in batch_ids)
                raise RagftError(f"loss became {loss.item()} at step {result.steps + 1} (batch: {names})")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            result.steps += 1
            result.losses.append(loss.item())
            result.tokens += int(batch["attention_mask"].sum())
            result.padded_tokens += batch["attention_mask"].numel()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    result.seconds = time.perf_counter() - start
    model.eval()
    return model, result
