"""The LoRA training loop, read top to bottom: set up, train, report.

Length-grouped batches keep padding low; the base stays in its loaded dtype (bf16 where
supported) while the adapter weights train in fp32; gradients are clipped; a NaN loss
stops training with the step and the examples of the batch named.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragft.config import FinetuneConfig
from ragft.errors import ConfigError, RagftError
from ragft.finetune.data import IGNORE, SFTRecord
from ragft.finetune.detach import detach_adapter, is_prompt_learning, stash_base_weights
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
    validation: list[tuple[int, float]] = field(default_factory=list)
    """(step, validation loss) at every check."""
    best_step: int = 0
    """Step of the lowest validation loss; its adapter is the one returned (0: no validation)."""
    stopped_early: bool = False
    """True when validation loss stopped improving for `patience` checks before the last step."""
    preference: dict[str, float] = field(default_factory=dict)
    """DPO / KTO: the last step's reward margin and preference accuracy (DPO) or KL (KTO)."""


def peft_config(cfg: FinetuneConfig) -> Any:
    """The peft config of `cfg.method`: LoRA (rank, alpha, dropout, target modules), IA3
    (peft's standard key, value and down projections for the model type) or prompt tuning
    (`cfg.virtual_tokens` trained input embeddings)."""
    from peft import IA3Config, LoraConfig, PromptTuningConfig, TaskType

    if cfg.method == "ia3":
        return IA3Config(task_type=TaskType.CAUSAL_LM)
    if cfg.method == "prompt_tuning":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.virtual_tokens)
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
    )


def check_target_modules(model: Any, cfg: FinetuneConfig) -> None:
    """Every LoRA target names linear layers of the model (as peft matches them: the whole
    module name or its last parts); else an error listing the model's linear layers."""
    if cfg.method != "lora":
        return
    import torch

    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    missing = [t for t in cfg.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        layers = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ConfigError(
            f"finetune.target_modules: {', '.join(map(repr, missing))} not found in the model; "
            f"its linear layers: {', '.join(layers)}"
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

    if is_prompt_learning(model):  # the virtual tokens are added in the peft model's own forward
        return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
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


def split_validation(
    records: Sequence[SFTRecord], fraction: float, seed: int
) -> tuple[list[SFTRecord], list[SFTRecord]]:
    """(train, validation): a seeded random `fraction` of the records held out (none when 0)."""
    if fraction <= 0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed + 1).shuffle(order)
    n = min(len(records) - 1, max(1, round(fraction * len(records))))
    held = set(order[:n])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def _loss_module(model: Any) -> Any:
    """`model` inside a module whose forward is `answer_loss`, so Accelerate's DDP wrapper
    sees (and synchronises) the whole step."""
    import torch

    class AnswerLoss(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
            return answer_loss(self.inner, input_ids, attention_mask, labels)

    return AnswerLoss(model)


def refuse_sharding(accelerator: Any) -> None:
    """Stop under FSDP or DeepSpeed: the loop keeps its own handles on the whole adapter weights
    (optimiser, checkpoints, best adapter), which sharding would leave pointing at the wrong tensors."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise RagftError(
            f"`accelerate launch` asked for {kind.value}, which ragft's training loop does not support; "
            "launch with --multi_gpu (DDP) instead: each process holds the whole model and trains on its share "
            "of every batch"
        )


def validation_loss(model: Any, records: Sequence[SFTRecord], pad_id: int, batch_size: int, device: Any) -> float:
    """Mean answer-token loss over held-out records (weighted by their answer tokens)."""
    import torch

    total, tokens = 0.0, 0
    order = sorted(range(len(records)), key=lambda i: len(records[i].input_ids))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = collate([records[i] for i in order[start : start + batch_size]], pad_id)
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += answer_loss(model, **{k: v.to(device) for k, v in batch.items()}).item() * n
            tokens += n
    return total / max(1, tokens)


def train_lora(
    model: Any,
    records: Sequence[SFTRecord],
    cfg: FinetuneConfig,
    pad_id: int,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
    on_step: Callable[[TrainResult], None] | None = None,
    start: str | Path | None = None,
) -> tuple[Any, TrainResult]:
    """Wrap `model` with a fresh adapter (`cfg.method`: LoRA, IA3 or prompt tuning) and train
    it on `records`; return (peft model, result). With `full`, every weight trains (in fp32,
    returned in the loaded dtype) and the plain model comes back, its base weights stashed.

    With `cfg.validation_fraction`, that share of the records is held out and its loss
    measured every `cfg.eval_every` steps; the adapter of the best check is kept, and with
    `cfg.patience` training stops after that many checks without improvement.

    With `checkpoint`, the adapter, optimiser state and progress are saved there every
    `cfg.checkpoint_every` steps, and a later call with the same `fingerprint` resumes from
    the last one: the batch order is replayed from the seed, so the result is the same
    as an uninterrupted run. `on_step` is called with the progress after every step. With
    `start` (a saved adapter's folder), that adapter goes on training instead of a fresh one.
    A NaN loss stops training naming the step and batch; the
    last good checkpoint stays.

    The loop runs under Hugging Face Accelerate: started by `accelerate launch` with N
    processes, each computes 1/N of every batch and DDP averages the gradients.
    """
    import torch
    from accelerate import Accelerator
    from peft import get_peft_model

    if not records:
        raise RagftError("no training records")

    # Set up.
    torch.manual_seed(seed)
    rng = random.Random(seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # without CUDA, processes talk over gloo
    refuse_sharding(accelerator)
    world, rank = accelerator.num_processes, accelerator.process_index
    train, held_out = split_validation(records, cfg.validation_fraction, seed)
    check_target_modules(model, cfg)
    loaded_dtype = next(model.parameters()).dtype
    if cfg.gradient_checkpointing:  # non-reentrant: frozen inputs need no requires_grad trick
        model.activation_checkpointing_enable({"use_reentrant": False})
    if cfg.method == "full":  # every weight trains, in fp32; the base is kept to restore later
        stash_base_weights(model)
        model = model.float().requires_grad_(True)
    elif start is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(start), is_trainable=True)
    else:
        try:
            model = get_peft_model(model, peft_config(cfg))
        except ValueError as e:  # peft's refusals of a model or method it cannot adapt
            raise ConfigError(f"finetune.method = {cfg.method!r} cannot adapt this model: {e}") from None
    try:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        step_loss = accelerator.prepare(_loss_module(model))
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
        lengths = [len(r.input_ids) for r in train]
        total = math.ceil(len(train) / cfg.batch_size) * cfg.epochs
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        device = accelerator.device
        eval_every = cfg.eval_every or math.ceil(len(train) / cfg.batch_size)
        result = TrainResult(0, 0.0, 0, 0, truncated=sum(r.truncated for r in records))
        best: dict[str, Any] = {}
        if checkpoint is not None:
            best = resume_checkpoint(Path(checkpoint), fingerprint, named, optimizer, result)
        resumed = saved_step = result.steps
        save_here = checkpoint is not None and accelerator.is_main_process

        def check_validation() -> bool:
            """Measure validation loss, remember the best adapter; True when patience has run out."""
            model.eval()
            loss = validation_loss(model, held_out, pad_id, cfg.batch_size, device)
            model.train()
            result.validation.append((result.steps, loss))
            if result.best_step == 0 or loss < min(v for s, v in result.validation if s != result.steps):
                result.best_step = result.steps
                best.update({n: p.detach().cpu().clone() for n, p in named})
            checks_since_best = sum(1 for s, _ in result.validation if s > result.best_step)
            return bool(cfg.patience) and checks_since_best >= cfg.patience

        # Train.
        model.train()
        start = time.perf_counter() - result.seconds
        quiet = not accelerator.is_main_process
        bar = progress(total=total, initial=resumed, desc="fine-tuning", unit="step", disable=quiet)
        step = 0
        stop = result.stopped_early
        for _epoch in range(cfg.epochs):
            for batch_ids in length_grouped_batches(lengths, cfg.batch_size, rng):
                if step >= total or stop:
                    break
                step += 1
                if step <= resumed:
                    continue  # done before the interruption; the order above is replayed
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step - 1, total, cfg.learning_rate)
                mine = batch_ids[rank::world] or batch_ids[:1]  # this process's share of the batch
                batch = collate([train[i] for i in mine], pad_id)
                loss = step_loss(**{k: v.to(device) for k, v in batch.items()})
                mean_loss = accelerator.reduce(loss.detach(), "mean") if world > 1 else loss.detach()
                if not torch.isfinite(mean_loss):
                    names = ", ".join(train[i].example_id for i in batch_ids)
                    kept = f"; the last good checkpoint (step {saved_step}) is kept" if saved_step else ""
                    raise RagftError(f"loss became {mean_loss.item()} at step {step} (batch: {names}){kept}")
                accelerator.backward(loss)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                result.steps = step
                result.losses.append(mean_loss.item())
                counts = torch.tensor(
                    [int(batch["attention_mask"].sum()), batch["attention_mask"].numel()], device=device
                )
                if world > 1:
                    counts = accelerator.reduce(counts, "sum")
                result.tokens += int(counts[0])
                result.padded_tokens += int(counts[1])
                bar.update(1)
                bar.set_postfix(loss=f"{mean_loss.item():.3f}")
                if on_step is not None:
                    on_step(result)
                if held_out and (step % eval_every == 0 or step == total):
                    stop = check_validation()
                    result.stopped_early = stop and step < total
                if save_here and step % cfg.checkpoint_every == 0 and step < total and not stop:
                    result.seconds = time.perf_counter() - start
                    save_checkpoint(Path(checkpoint), fingerprint, named, optimizer, result, best)
                    saved_step = step
                accelerator.wait_for_everyone()
        bar.close()
        if held_out and result.validation[-1][0] != result.steps:
            check_validation()  # the last step had no check yet (training ended by max_steps)
        if best and result.best_step != result.steps:
            with torch.no_grad():  # keep the adapter of the best validation check
                for n, p in named:
                    p.copy_(best[n].to(p.device))
        result.seconds = time.perf_counter() - start
        if cfg.method == "full":
            model = model.to(loaded_dtype).requires_grad_(False)  # scored in the same dtype as every pipeline
        if cfg.gradient_checkpointing:
            model.activation_checkpointing_disable()
        model.eval()
        return model, result
    except BaseException:  # NaN, Ctrl-C, a peft error: the caller's model goes back as it came
        base = undo_training(model, loaded_dtype)
        if cfg.gradient_checkpointing:
            base.activation_checkpointing_disable()
        raise


def undo_training(model: Any, loaded_dtype: Any) -> Any:
    """The base model of a training that failed: adapter layers taken out (or, for full
    fine-tuning, the stashed base weights put back) in the loaded dtype, in eval mode."""
    base = detach_adapter(model)
    base.to(loaded_dtype).requires_grad_(False)
    return base


ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def save_checkpoint(
    folder: Path,
    fingerprint: str,
    named: list[tuple[str, Any]],
    optimizer: Any,
    result: TrainResult,
    best: dict[str, Any] | None = None,
) -> None:
    """Adapter weights, AdamW moments, the best adapter so far and progress as safetensors + JSON (no pickle)."""
    from safetensors.torch import save_file

    tensors = {f"param.{n}": p.detach().cpu().contiguous() for n, p in named}
    for n, p in named:
        for key, value in optimizer.state.get(p, {}).items():
            tensors[f"{key}.{n}"] = value.detach().cpu().contiguous()
    for n, value in (best or {}).items():
        tensors[f"best.{n}"] = value.contiguous()
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        write_json_atomic(tmp / "progress.json", {"fingerprint": fingerprint, **asdict(result)})


def resume_checkpoint(
    folder: Path, fingerprint: str, named: list[tuple[str, Any]], optimizer: Any, result: TrainResult
) -> dict[str, Any]:
    """Restore a checkpoint saved by the same training setup (ignore any other); return the
    best adapter weights it holds (empty without validation)."""
    import json

    import torch
    from safetensors.torch import load_file

    progress_file = folder / "progress.json"
    if not progress_file.is_file():
        return {}
    saved = json.loads(progress_file.read_text())
    if saved.pop("fingerprint") != fingerprint:
        return {}
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
    saved["validation"] = [tuple(v) for v in saved.get("validation", [])]
    for key, value in saved.items():
        setattr(result, key, value)
    return {n[len("best.") :]: t for n, t in tensors.items() if n.startswith("best.")}
