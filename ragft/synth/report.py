"""A synthesis in words: what was tried, dropped per filter, kept and spent."""

from __future__ import annotations

from typing import Any


def synthesis_lines(stats: dict[str, Any]) -> list[str]:
    """What a synthesis tried, dropped (per filter), kept, cost, and how close it came to the test set."""
    tried, kept = stats["candidates"], stats["kept"]
    lines = [
        f"{stats['method']}: {tried} pairs tried from {stats['chunks']} chunks of {stats['documents']} documents "
        f"({stats['held_out_documents']} documents with test questions left out); "
        f"{kept} kept ({kept / max(1, tried):.0%})",
        "dropped: " + (", ".join(f"{reason} {n}" for reason, n in stats["dropped"].items() if n) or "none"),
        "kept fraction per filter: " + ", ".join(f"{reason} {rate:.0%}" for reason, rate in stats["pass_rate"].items()),
        f"cost: {stats['prompt_tokens']:,} prompt + {stats['completion_tokens']:,} output tokens, "
        f"{stats['seconds']:.0f} s, {stats['pairs_per_second']:.2f} kept pairs/s",
    ]
    if stats.get("checker"):
        lines.append(f"round trips asked by pipeline {stats['checker']!r}'s fine-tuned model")
    overlap = stats.get("test_overlap")
    if overlap:
        lines.append(
            f"largest word run shared with a test question: {overlap['words']} "
            f"({overlap['question']!r} / {overlap['test_question']!r})"
        )
    return lines
