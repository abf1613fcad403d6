"""bf16 against fp32 generation on this machine, side by side in one process.

Prints decode throughput for each dtype, the ratio, and how many answers are identical.
Run: .venv/bin/python benchmarks/generation_dtype.py [--questions 48]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ragft.generation import Generator
from ragft.prompts import get_template
from ragft.tasks.qa import load_examples

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    examples = load_examples(ROOT / "corpora" / "handbook" / "qa.jsonl")[: args.questions]
    results = {}
    for dtype in ("float32", "bfloat16"):
        gen = Generator.load("smollm2-135m-instruct", dtype, batch_size=args.batch_size, max_new_tokens=32)
        prompts = [gen.render(get_template("qa").messages(e.question)) for e in examples]
        gen.generate(prompts[: args.batch_size])  # warm-up
        start = time.perf_counter()
        out = gen.generate(prompts)
        seconds = time.perf_counter() - start
        tokens = sum(g.completion_tokens for g in out)
        results[dtype] = (seconds, tokens, [g.text for g in out])
        print(f"{dtype:9} {len(prompts)} prompts, {tokens} new tokens in {seconds:.1f} s: {tokens / seconds:.1f} tok/s")
    (s32, t32, o32), (s16, t16, o16) = results["float32"], results["bfloat16"]
    same = sum(a == b for a, b in zip(o32, o16))
    print(f"bf16 / fp32 throughput ratio: {(t16 / s16) / (t32 / s32):.2f}x; identical answers: {same}/{len(o32)}")


if __name__ == "__main__":
    main()
