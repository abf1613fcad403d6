"""Checks that stop a wrong conclusion: the constant-answer baseline (the most frequent
training answer given to every test question) and warnings for collapsed outputs (one
answer for many different questions, or far less variety than the gold answers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ragft.metrics import final_answer, normalize_answer
from ragft.stats import ALPHA, bootstrap, holm, paired_difference

if TYPE_CHECKING:
    from ragft.types import Prediction

COLLAPSE_SHARE = 0.25
"""One output for at least this share of the test questions ..."""
COLLAPSE_OVER_GOLD = 2.0
"""... and at least this many times the share of the most frequent gold answer: a warning."""
VARIETY_RATIO = 0.5
"""A fine-tuned pipeline with fewer distinct outputs than this fraction of the distinct gold answers: a warning."""


def constant_answer(
    train_answers: Sequence[tuple[str, str]], test_ids: Sequence[str], score: Callable[[int, str], Any]
) -> dict[str, Any] | None:
    """The most frequent training answer, scored as the answer to every test example.

    `train_answers` are (normalised form, as written) pairs; `score(i, text)` scores test
    example i as the task does. None where no training answer repeats: a constant answer
    would then be a guess, not a baseline.
    """
    counts = Counter(key for key, _ in train_answers if key)
    if not counts:
        return None
    top, count = counts.most_common(1)[0]
    if count < 2:
        return None
    answer = next(text for key, text in train_answers if key == top)
    return {
        "answer": answer,
        "train_count": count,
        "train_examples": len(train_answers),
        "scores": {example: score(i, answer)[0] for i, example in enumerate(test_ids)},
    }


def baseline_block(
    baseline: dict[str, Any],
    order: Sequence[str],
    scores: Callable[[str, str], list[list[float]]],
    names: Sequence[str],
    metrics: Sequence[str],
    samples: int,
    seed: int,
    labels: list[str] | None,
) -> dict[str, Any]:
    """The baseline's scores with intervals, and every pipeline tested against it on the
    primary metric (paired, Holm-adjusted over the pipelines): `above` is False where a
    pipeline is not significantly better than answering the same thing to every question."""
    own = {m: [baseline["scores"][i][m] for i in order] for m in metrics}
    primary = metrics[0]
    rows = []
    for name in names:
        d = paired_difference(own[primary], scores(name, primary), samples, seed, labels)
        rows.append({"pipeline": name, "metric": primary, **asdict(d)})
    for row, p in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = p
        row["above"] = row["mean"] > 0 and p < ALPHA
    return {
        **baseline,
        "metrics": {m: asdict(bootstrap(own[m], samples, seed, labels)) for m in metrics},
        "comparisons": rows,
    }


def _normal(text: str) -> str:
    return normalize_answer(final_answer(text))


def collapse_warnings(runs: dict[str, list[list[Prediction]]], trained: Sequence[str]) -> list[dict[str, Any]]:
    """Pipelines whose outputs collapsed: one output for a large share of the test questions
    (far more than the most frequent gold answer's share), or, for fine-tuned pipelines,
    far fewer distinct outputs than there are distinct gold answers."""
    warnings = []
    for name, by_seed in runs.items():
        preds = by_seed[0]
        n = len(preds)
        if n == 0:
            continue
        outputs = Counter(_normal(p.output) for p in preds)
        gold = Counter(_normal(p.answers[0]) if p.answers else "" for p in preds)
        top, count = outputs.most_common(1)[0]
        share, gold_share = count / n, gold.most_common(1)[0][1] / n
        shown = repr(top) if top else "an empty answer"
        if share >= COLLAPSE_SHARE and share >= COLLAPSE_OVER_GOLD * gold_share:
            warnings.append(
                {
                    "pipeline": name,
                    "kind": "one_output",
                    "share": share,
                    "output": top,
                    "gold_share": gold_share,
                    "message": f"{name} gives one output ({shown}) to {count} of {n} test questions "
                    f"({100 * share:.0f}%); the most frequent gold answer covers {100 * gold_share:.0f}%",
                }
            )
        if name in trained and len(outputs) < VARIETY_RATIO * len(gold):
            warnings.append(
                {
                    "pipeline": name,
                    "kind": "low_variety",
                    "distinct_outputs": len(outputs),
                    "distinct_gold": len(gold),
                    "message": f"{name} gives {len(outputs)} distinct outputs to {n} test questions whose gold "
                    f"answers have {len(gold)}: far less varied than the answers it should give",
                }
            )
    return warnings
