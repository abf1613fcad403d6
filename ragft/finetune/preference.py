"""Preference tuning on feedback with TRL: DPO on (prompt, chosen, rejected) pairs, KTO on
(prompt, completion, desirable?) labels, with the same adapter settings as the LoRA loop.

Starting from another pipeline's adapter (`finetune.init_from`), the reference model is that
adapter as it was: TRL copies the starting adapter into a frozen `ref` adapter and scores
the reference through it, so the trained model is pulled toward the preferred answers and
held near the model that gave the answers (`finetune.beta`). Without a starting adapter,
a fresh one trains against the base model.

Prompts are the exact text the served model saw (its chat template applied); TRL appends
the end-of-sequence token to each answer. Training keeps no checkpoint: an interrupted
preference run trains again from its start.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ConfigError, RagftError
from ragft.finetune.lora import TrainResult, check_target_modules, peft_config

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
    if start is not None:
        policy = PeftModel.from_pretrained(model, str(start), is_trainable=True)
    else:
        check_target_modules(model, cfg)
        policy = get_peft_model(model, peft_config(cfg))
    columns = ("prompt", "chosen", "rejected") if objective == "dpo" else ("prompt", "completion", "label")
    data = Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
    with tempfile.TemporaryDirectory(prefix="ragft-preference-") as scratch:
        trainer = _trainer(policy, tokenizer, data, cfg, seed, scratch)
        start_time = time.perf_counter()
        try:
            trainer.train()
        except BaseException:
            _drop_reference(policy)
            raise
        seconds = time.perf_counter() - start_time
    _drop_reference(policy)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    tokens = int(sum(entry.get("num_tokens", 0) for entry in logs[-1:]))
    last = logs[-1] if logs else {}
    preference = {k: float(last[k]) for k in ("rewards/margins", "rewards/accuracies", "kl") if k in last}
    losses = [float(e["loss"]) for e in logs]
    return policy, TrainResult(trainer.state.global_step, seconds, tokens, tokens, losses, preference=preference)


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
        max_length=cfg.max_length,
        beta=cfg.beta,
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if cfg.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(model=policy, args=DPOConfig(**common), train_dataset=data, processing_class=tokenizer)
    from trl import KTOConfig, KTOTrainer

    return KTOTrainer(model=policy, args=KTOConfig(**common), train_dataset=data, processing_class=tokenizer)


def _drop_reference(policy: Any) -> None:
    """Take TRL's frozen reference copy off: the model keeps only the adapter it trained."""
    if REFERENCE in getattr(policy, "peft_config", {}):
        policy.set_adapter("default")
        policy.delete_adapter(REFERENCE)
