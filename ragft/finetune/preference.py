"""Preference tuning on feedback with TRL: DPO on (prompt, chosen, rejected) pairs, KTO on
(prompt, completion, desirable?) labels, with the same adapter settings as the LoRA loop.

Starting from another pipeline's adapter (`finetune.init_from`), the reference model is that
adapter as it was: TRL copies the starting adapter into a frozen `ref` adapter and scores
the reference through it, so the trained model is pulled toward the preferred answers and
held near the model that gave the answers (`finetune.beta`). Without a starting adapter,
a fresh one trains against the base model.

Prompts are the exact text the served model saw (its chat template applied), cut from the
middle where one with its longest answer would not fit `finetune.max_length` (TRL would cut
the answer); TRL appends the end-of-sequence token to each answer. Training keeps no
checkpoint: an interrupted preference run trains again from its start.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ConfigError, RagftError
from ragft.finetune.data import fit_prompt
from ragft.finetune.lora import TrainResult, check_target_modules, peft_config, undo_training

if TYPE_CHECKING:
    from ragft.config import FinetuneConfig

REFERENCE = "ref"
"""The name TRL gives the frozen copy of the starting adapter."""


def train_preference(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    cfg: FinetuneConfig,
    seed: int = 0,
    start: str | Path | None = None,
) -> tuple[Any, TrainResult]:
    """Train an adapter on `rows` with `cfg.objective` (dpo: prompt, chosen, rejected; kto:
    prompt, completion, label); return (peft model with only the trained adapter, result)."""
    import torch
    from datasets import Dataset
    from peft import PeftModel, get_peft_model

    objective = cfg.objective
    if objective not in ("dpo", "kto"):
        raise ValueError(f"train_preference trains dpo or kto, not {objective!r}")
    if cfg.method not in ("lora", "ia3"):
        raise ConfigError(f"finetune.objective = {objective!r} trains a LoRA or IA3 adapter, not {cfg.method!r}")
    if objective == "kto" and cfg.batch_size < 2:
        raise ConfigError("finetune.objective = 'kto' compares answers within a batch: finetune.batch_size >= 2")
    if not rows:
        raise RagftError(f"no {objective} records")

    torch.manual_seed(seed)
    loaded_dtype = next(model.parameters()).dtype
    use_cache = getattr(model.config, "use_cache", None)  # trainers turn the KV cache off; generation wants it
    if start is not None:
        policy = PeftModel.from_pretrained(model, str(start), is_trainable=True)
    else:
        check_target_modules(model, cfg)
        policy = get_peft_model(model, peft_config(cfg))
    columns = ("prompt", "chosen", "rejected") if objective == "dpo" else ("prompt", "completion", "label")
    fitted = [_fitted(r, tokenizer, cfg.max_length, columns) for r in rows]
    data = Dataset.from_dict({c: [r[c] for r in fitted] for c in columns})
    try:
        with tempfile.TemporaryDirectory(prefix="ragft-preference-") as scratch:
            trainer = _trainer(policy, tokenizer, data, cfg, seed, scratch)
            start_time = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start_time
        _drop_reference(policy)
    except BaseException:  # a TRL error, Ctrl-C: the caller's model goes back as it came
        _drop_reference(policy)
        base = undo_training(policy, loaded_dtype)
        if cfg.gradient_checkpointing:
            base.activation_checkpointing_disable()
        raise
    if cfg.gradient_checkpointing:
        policy.activation_checkpointing_disable()
    if use_cache is not None:
        model.config.use_cache = use_cache
    policy.eval()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    tokens = int(sum(entry.get("num_tokens", 0) for entry in logs[-1:]))
    last = logs[-1] if logs else {}
    preference = {k: float(last[k]) for k in ("rewards/margins", "rewards/accuracies", "kl") if k in last}
    losses = [float(e["loss"]) for e in logs]
    truncated = sum(r["_cut"] for r in fitted)
    steps = trainer.state.global_step
    del trainer  # its optimiser state and data go before the model answers
    gc.collect()
    result = TrainResult(steps, seconds, tokens, tokens, losses, truncated, preference=preference)
    return policy, result


def _fitted(row: dict[str, Any], tokenizer: Any, max_length: int, columns: tuple[str, ...]) -> dict[str, Any]:
    """The row with its prompt cut (from the middle, as SFT records are) so that its longest
    answer and the end-of-sequence token fit in `max_length`: TRL would cut the answer."""
    answers = [row[c] for c in columns[1:] if isinstance(row[c], str)]
    longest = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers) + 1
    ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
    kept, cut = fit_prompt(str(row.get("id", "")), ids, longest + 8, max_length)  # 8: re-tokenising may differ
    return {**row, "prompt": tokenizer.decode(kept) if cut else row["prompt"], "_cut": cut}


def _trainer(policy: Any, tokenizer: Any, data: Any, cfg: FinetuneConfig, seed: int, scratch: str) -> Any:
    import torch

    common = dict(
        output_dir=scratch,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,  # the model trains in the dtype it was loaded in
        gradient_checkpointing=cfg.gradient_checkpointing,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_length=None,  # prompts are cut to fit beforehand, answers never
        beta=cfg.beta,
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=os.environ.get("RAGFT_PROGRESS", "1") == "0",
        dataloader_num_workers=0,
    )
    if cfg.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(model=policy, args=DPOConfig(**common), train_dataset=data, processing_class=tokenizer)
    else:
        from trl import KTOConfig, KTOTrainer

        trainer = KTOTrainer(model=policy, args=KTOConfig(**common), train_dataset=data, processing_class=tokenizer)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the progress bar, not a printed dict per step
    return trainer


def _drop_reference(policy: Any) -> None:
    """Take TRL's frozen reference copy off: the model keeps only the adapter it trained."""
    if REFERENCE in getattr(policy, "peft_config", {}):
        policy.set_adapter("default")
        policy.delete_adapter(REFERENCE)
