"""Training memory with and without gradient checkpointing (`finetune.gradient_checkpointing`).

Each setting trains the offline 135M generator with LoRA for a few steps in its own fresh
process (Linux: it reads /proc), on records of one length (random tokens, the last 32 as
the answer, the shape of text-to-SQL `rag+ft` records), and reports that process's peak
resident memory, the part of it above the loaded model, and training tokens/s. Settings
alternate over `--rounds`.

Run: .venv/bin/python benchmarks/training_memory.py [--length 1024 --batch 8 --steps 3 --rounds 1]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path


def peak_rss() -> int:
    """This process's peak resident memory in bytes since the last reset (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(args: argparse.Namespace) -> None:
    """Train in this process and print one JSON line of measurements."""
    import psutil
    import torch

    from ragft.config import FinetuneConfig, ModelsConfig
    from ragft.finetune.data import make_record
    from ragft.finetune.lora import train_lora
    from ragft.generation import Generator

    generator = Generator.load(ModelsConfig().generator, args.dtype)
    with torch.no_grad():  # page the weights in, so they count as loaded, not as training memory
        generator.model(input_ids=torch.tensor([[1, 2, 3]]))
    loaded = psutil.Process().memory_info().rss
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak, so loading's transient is not counted
    tokenizer = generator.tokenizer
    rng = random.Random(0)
    vocab = range(100, len(tokenizer) - 1)
    records = [
        make_record(
            str(i),
            rng.choices(vocab, k=args.length - 33),
            rng.choices(vocab, k=32),
            tokenizer.eos_token_id,
            args.length,
        )
        for i in range(args.batch * args.steps)
    ]
    cfg = FinetuneConfig(
        batch_size=args.batch, epochs=1, gradient_checkpointing=args.child == "on", checkpoint_every=10**9
    )
    start = time.perf_counter()
    _, result = train_lora(generator.model, records, cfg, tokenizer.pad_token_id)
    seconds = time.perf_counter() - start
    peak = peak_rss()
    print(json.dumps({"peak": peak, "loaded": loaded, "tokens_per_s": result.tokens / seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=1024, help="tokens per record")
    parser.add_argument("--batch", type=int, default=8, help="records per step")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each setting, alternating")
    parser.add_argument("--dtype", default="auto", help="generator weights: auto, bfloat16 or float32")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for setting in runs:
            command = [sys.executable, __file__, "--child", setting] + [
                f"--{k}={v}" for k, v in vars(args).items() if k not in ("child", "rounds")
            ]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[setting].append(json.loads(out.strip().splitlines()[-1]))
            print(setting, runs[setting][-1], flush=True)

    print(f"\nLoRA, {args.batch} records x {args.length} tokens a step, {args.steps} steps, weights {args.dtype}")
    gib = 2**30
    summary = {}
    for setting, values in runs.items():
        peak = statistics.median(v["peak"] for v in values)
        above = statistics.median(v["peak"] - v["loaded"] for v in values)
        speed = statistics.median(v["tokens_per_s"] for v in values)
        summary[setting] = (peak, above, speed)
        print(
            f"gradient checkpointing {setting:3}: peak RSS {peak / gib:5.2f} GiB "
            f"({above / gib:5.2f} GiB above the loaded model), {speed:6.1f} tokens/s"
        )
    (_, off_above, off_speed), (_, on_above, on_speed) = summary["off"], summary["on"]
    print(f"training memory on / off: {on_above / off_above:.2f}; tokens/s on / off: {on_speed / off_speed:.2f}")


if __name__ == "__main__":
    main()
