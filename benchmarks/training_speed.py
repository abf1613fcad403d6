"""Training throughput: ragft's LoRA loop against TRL's SFTTrainer, side by side in one process.

Same model (the offline 135M generator, bf16 weights where the CPU has bf16), same LoRA
config, batch size, learning rate, and the same tokenised `rag+ft` records of the bundled
handbook (RAFT contexts, loss on answer tokens only). Each trainer runs `--rounds` times,
alternating; tokens/s (padding excluded) is measured over the steps after `--warmup`.
Also prints the CPU's measured matmul peak in bf16 and fp32 and the fraction of it each
trainer reaches, counting 4 x (non-embedding parameters) FLOPs per token (forward plus
the backward pass through frozen weights; attention scores not counted).

Needs TRL: .venv/bin/pip install -c constraints.txt -e '.[bench]'
Run: .venv/bin/python benchmarks/training_speed.py [--records 96 --steps 8 --warmup 2 --rounds 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ragft.config import FinetuneConfig, load_config
from ragft.finetune.lora import peft_config, train_lora
from ragft.generation import Generator
from ragft.resources import Resources
from ragft.runner.run import load_task
from ragft.settings import ladder

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10, budget_s: float = 20.0) -> float:
    """Best FLOP/s of an n x n matmul in `dtype` over `repeats` runs (fewer, at least 2,
    once `budget_s` is spent: a CPU without native bf16 takes seconds per product)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm up
    best = float("inf")
    begin = time.perf_counter()
    for i in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
        if i >= 1 and time.perf_counter() - begin > budget_s:
            break
    return 2 * n**3 / best


def ragft_tokens_per_second(model, records, cfg, pad_id, warmup: int) -> float:
    marks: list[tuple[float, int]] = []
    train_lora(model, records, cfg, pad_id, on_step=lambda r: marks.append((time.perf_counter(), r.tokens)))
    (t0, n0), (t1, n1) = marks[warmup - 1], marks[-1]
    return (n1 - n0) / (t1 - t0)


def trl_tokens_per_second(model, tokenizer, records, cfg, warmup: int, out: str) -> float:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    marks: list[tuple[float, int]] = []

    class Marks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    data = Dataset.from_dict(
        {"input_ids": [list(r.input_ids) for r in records], "labels": [list(r.labels) for r in records]}
    )
    args = SFTConfig(
        output_dir=out,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        warmup_steps=max(1, cfg.max_steps // 10),
        lr_scheduler_type="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=cfg.max_length,
        completion_only_loss=True,
        include_num_input_tokens_seen="non_padding",
        use_cpu=not torch.cuda.is_available(),
        bf16=False,  # no autocast: both trainers compute in the weights' dtype
        fp16=False,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
        callbacks=[Marks()],
    )
    trainer.train()
    (t0, n0), (t1, n1) = marks[warmup - 1], marks[-1]
    return (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=96, help="training records (steps x batch or more)")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps measured")
    parser.add_argument("--warmup", type=int, default=2, help="steps run before measuring")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each trainer, alternating")
    parser.add_argument("--dtype", default="auto", help="generator weights: auto, bfloat16 or float32")
    args = parser.parse_args()

    config = load_config(ROOT / "configs" / "handbook.toml", [f"data.train_limit={args.records}"])
    generator = Generator.load(config.models.generator, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        task = load_task(Path(tmp), config, Resources([generator]))
        records = task.train_records(ladder(config, ["rag+ft"])[0], generator)
        base = generator.model
        cfg = FinetuneConfig(max_steps=args.warmup + args.steps, epochs=100)
        pad_id = generator.tokenizer.pad_token_id
        results: dict[str, list[float]] = {"ragft": [], "TRL SFTTrainer": []}
        for _ in range(args.rounds):
            results["ragft"].append(ragft_tokens_per_second(copy.deepcopy(base), records, cfg, pad_id, args.warmup))
            results["TRL SFTTrainer"].append(
                trl_tokens_per_second(copy.deepcopy(base), generator.tokenizer, records, cfg, args.warmup, tmp)
            )
            print({k: [round(x, 1) for x in v] for k, v in results.items()}, flush=True)

    dtype = next(base.parameters()).dtype
    peaks = {"bfloat16": matmul_peak(torch.bfloat16), "float32": matmul_peak(torch.float32)}
    body = sum(p.numel() for n, p in base.named_parameters() if "embed" not in n and "lm_head" not in n)
    flops_per_token = 4 * body
    peak = peaks["bfloat16" if dtype == torch.bfloat16 else "float32"]
    mean_length = sum(len(r.input_ids) for r in records) / len(records)
    print(f"\n{len(records)} records, mean {mean_length:.0f} tokens; ", end="")
    print(f"batch {cfg.batch_size}, LoRA rank {cfg.rank}, weights {dtype}, {torch.get_num_threads()} threads")
    print(f"matmul peak: bf16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s, fp32 {peaks['float32'] / 1e9:.1f} GFLOP/s")
    for name, values in results.items():
        median = statistics.median(values)
        share = median * flops_per_token / peak
        print(f"{name:15} {median:8.1f} tokens/s (median of {len(values)}), {100 * share:.1f}% of the matmul peak")
    ratio = statistics.median(results["ragft"]) / statistics.median(results["TRL SFTTrainer"])
    print(f"ragft / TRL tokens/s: {ratio:.2f}")


if __name__ == "__main__":
    main()
