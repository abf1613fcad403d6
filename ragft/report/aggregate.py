"""From predictions to the report's numbers: each pipeline's scores with intervals that
resample the test set's clusters (and training seeds), paired differences between
pipelines with Holm-adjusted p-values, what each step up the ladder buys, and the
checks beside them (constant-answer baseline, collapsed outputs, the verdict)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ragft.metrics import METRICS
from ragft.report.sanity import baseline_block, collapse_warnings
from ragft.report.verdict import money, one_off_seconds, verdict
from ragft.stats import ALPHA, bootstrap, holm, mcnemar, paired_difference

if TYPE_CHECKING:
    from ragft.types import Prediction

MIN_CLUSTERS = 5
"""Fewer clusters than this and the bootstrap resamples examples instead (a bootstrap of
two or three clusters has only a handful of distinct resamples); the report says so."""


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def in_order(predictions: list[Prediction], order: Sequence[str]) -> list[Prediction]:
    by_id = {p.example_id: p for p in predictions}
    return [by_id[i] for i in order]


def clustering(order: Sequence[str], groups: dict[str, str] | None, by: str = "") -> dict[str, Any]:
    """How the test examples (in `order`) are resampled: by cluster where they come in
    at least two, else one by one; `groups` maps an example id to its cluster."""
    labels = [groups.get(i, i) for i in order] if groups else list(order)
    clusters = len(set(labels))
    if groups and MIN_CLUSTERS <= clusters < len(labels):
        return {"by": by or "group", "clusters": clusters, "examples": len(labels), "labels": labels}
    out: dict[str, Any] = {"by": "example", "clusters": len(labels), "examples": len(labels), "labels": None}
    if groups and clusters < MIN_CLUSTERS:
        out["too_few"] = {"by": by or "group", "clusters": clusters}
    return out


@dataclass(frozen=True)
class StatisticsInputs:
    """What the report's statistics are computed from besides predictions, costs and the
    constant-answer baseline. The runner saves it in report.json (`statistics_inputs`), so
    `ragft report` recomputes the statistics with the same inputs and the same code."""

    samples: int
    seed: int
    metrics: list[str]
    pairs: list[tuple[str, str]]
    groups: dict[str, str] | None
    """Each test example's cluster by id; the bootstrap resamples clusters."""
    grouped_by: str
    seeds: dict[str, list[int]]
    """The training seeds of each pipeline trained with several (the experiment's seed first)."""
    trained: list[str]
    prices: dict[str, dict[str, float]]
    endpoints: list[str]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatisticsInputs:
        return cls(**{**data, "pairs": [(a, b) for a, b in data["pairs"]]})


def statistics(
    predictions: dict[str, list[Prediction]],
    costs: dict[str, dict[str, Any]],
    inputs: StatisticsInputs,
    seeded: dict[str, list[list[Prediction]]],
    baseline: dict[str, Any] | None,
) -> dict[str, Any]:
    """The report's statistics (`aggregate`) from what a run made; `seeded` holds every seed's
    predictions of the pipelines in `inputs.seeds`."""
    i = inputs
    return aggregate(
        predictions, costs, i.samples, i.seed, i.metrics, i.pairs, i.groups, i.grouped_by, seeded, baseline,
        i.trained, i.prices, i.endpoints,
    )  # fmt: skip


def aggregate(
    predictions: dict[str, list[Prediction]],
    costs: dict[str, dict[str, Any]],
    samples: int,
    seed: int,
    metrics: Sequence[str] = METRICS,
    pairs: Sequence[tuple[str, str]] = (),
    groups: dict[str, str] | None = None,
    grouped_by: str = "",
    seeded: dict[str, list[list[Prediction]]] | None = None,
    baseline: dict[str, Any] | None = None,
    trained: Sequence[str] = (),
    prices: dict[str, dict[str, float]] | None = None,
    endpoints: Sequence[str] = (),
) -> dict[str, Any]:
    """Per-pipeline scores with intervals, paired comparisons of every pair (or of `pairs`),
    what each step to the next pipeline buys, the constant-answer baseline, warnings and
    the verdict.

    `groups` maps each test example id to its cluster (its document, its database); the
    bootstrap resamples clusters. `seeded` holds every seed's predictions of a pipeline
    trained with several seeds (the experiment's seed first): its mean is over seeds and
    its interval includes seed-to-seed variation. `baseline` is the constant answer and
    its scores per example id (`ragft.report.sanity.constant_answer`). `prices` holds each
    pipeline's `[prices]` settings; the pipelines in `endpoints` are priced by their tokens.
    """
    names = list(predictions)
    order = [p.example_id for p in predictions[names[0]]]
    for name in names:
        if [p.example_id for p in predictions[name]] != order:
            raise ValueError(f"pipelines {names[0]} and {name} were scored on different examples")
    cluster = clustering(order, groups, grouped_by)
    labels = cluster["labels"]
    runs = {n: [in_order(preds, order) for preds in (seeded or {}).get(n) or [predictions[n]]] for n in names}

    def scores(name: str, m: str) -> list[list[float]]:
        return [[p.scores[m] for p in preds] for preds in runs[name]]

    pipelines: dict[str, Any] = {}
    for name, preds in predictions.items():
        seconds = [p.seconds for p in preds]
        primary = scores(name, metrics[0])
        pipelines[name] = {
            "n": len(preds),
            "metrics": {m: asdict(bootstrap(scores(name, m), samples, seed, labels)) for m in metrics},
            "per_question": asdict(bootstrap(primary, samples, seed)),
            "costs": {
                "prompt_tokens_per_query": sum(p.prompt_tokens for p in preds) / max(1, len(preds)),
                "completion_tokens_per_query": sum(p.completion_tokens for p in preds) / max(1, len(preds)),
                "seconds_per_query_p50": _percentile(seconds, 50),
                "seconds_per_query_p95": _percentile(seconds, 95),
                "seconds_per_query_mean": sum(seconds) / max(1, len(seconds)),
                "queries_per_second": len(preds) / max(1e-9, sum(seconds)),
                **costs.get(name, {}),
            },
        }
        pipelines[name]["costs"].update(money(pipelines[name]["costs"], (prices or {}).get(name), name in endpoints))
    every = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    tested = list(pairs) or every
    family = {frozenset(p): p for p in every}
    rows = {
        pair: _compare_pair(*pair, scores, samples, seed, metrics, labels) for pair in dict.fromkeys(every + tested)
    }
    for m in metrics:  # Holm over every pair of pipelines, one family per metric
        keys = list(family.values())
        adjusted = holm([rows[k][m]["p_value"] for k in keys])
        by_pair = {frozenset(k): p for k, p in zip(keys, adjusted)}
        for pair, row in rows.items():
            row[m]["p_holm"] = by_pair[frozenset(pair)]
    comparisons = [rows[pair][m] for pair in tested for m in metrics]
    steps = [_step(a, b, pipelines, rows[(a, b)], metrics) for a, b in zip(names, names[1:])]
    kept = {"groups": {i: groups[i] for i in order if i in groups}} if groups else {}  # for `ragft report`
    report: dict[str, Any] = {
        "clustering": {**{k: v for k, v in cluster.items() if k != "labels"}, **kept},
        "example_order": order,  # the bootstrap's draws depend on it: `ragft report` resamples in this order
        "pipelines": pipelines,
        "comparisons": comparisons,
        "pairs_in_family": len(every),
        "steps": steps,
    }
    if baseline is not None:
        report["baseline"] = baseline_block(baseline, order, scores, names, metrics, samples, seed, labels)
    warnings = collapse_warnings(runs, trained)
    if warnings:
        report["warnings"] = warnings
    all_primary = [rows[pair][metrics[0]] for pair in every]
    report["verdict"] = verdict(pipelines, all_primary, steps, metrics, report.get("baseline"), warnings)
    if every and len(every) / samples >= ALPHA:  # bootstrap p-values stop at 1 / samples
        report["verdict"]["flags"].append(
            f"With {len(every)} pairs of pipelines and {samples} bootstrap resamples no Holm-adjusted p-value "
            f"can fall below {len(every) / samples:.3f}, so no difference can be called significant: raise "
            f"experiment.bootstrap_samples to {math.ceil(len(every) / 0.001):,} or more."
        )
    return report


def _compare_pair(
    a: str, b: str, scores: Any, samples: int, seed: int, metrics: Sequence[str], labels: list[str] | None
) -> dict[str, dict[str, Any]]:
    """b against a on the same examples, per metric: paired cluster bootstrap, and (where
    examples are independent) exact McNemar for 0/1 metrics."""
    out = {}
    for m in metrics:
        x, y = scores(a, m), scores(b, m)
        row = {"from": a, "to": b, "metric": m, **asdict(paired_difference(x, y, samples, seed, labels))}
        if labels is None and len(x) == len(y) == 1 and {*x[0], *y[0]} <= {0.0, 1.0}:
            row["only_from_right"], row["only_to_right"], row["mcnemar_p"] = mcnemar(x[0], y[0])
        out[m] = row
    return out


def _step(
    a: str, b: str, pipelines: dict[str, Any], rows: dict[str, dict[str, Any]], metrics: Sequence[str]
) -> dict[str, Any]:
    """What moving up one rung buys (points of each metric) and costs (seconds, tokens, training)."""
    ca, cb = pipelines[a]["costs"], pipelines[b]["costs"]
    gain = rows[metrics[0]]
    d_seconds = cb["seconds_per_query_mean"] - ca["seconds_per_query_mean"]
    d_tokens = cb["prompt_tokens_per_query"] - ca["prompt_tokens_per_query"]
    return {
        "from": a,
        "to": b,
        "metric": metrics[0],
        "points": 100 * gain["mean"],
        "points_low": 100 * gain["low"],
        "points_high": 100 * gain["high"],
        "p_holm": gain["p_holm"],
        "by_metric": {
            m: {"points": 100 * r["mean"], "low": 100 * r["low"], "high": 100 * r["high"], "p_holm": r["p_holm"]}
            for m, r in rows.items()
        },
        "added_seconds_per_query": d_seconds,
        "added_prompt_tokens_per_query": d_tokens,
        "added_training_seconds": one_off_seconds(cb) - one_off_seconds(ca),
        "points_per_added_second": 100 * gain["mean"] / d_seconds if d_seconds > 0 else None,
        "points_per_100_added_tokens": 100 * 100 * gain["mean"] / d_tokens if d_tokens > 0 else None,
    }


def seed_spread(runs: dict[str, dict[int, list[Prediction]]], metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """Per pipeline: the mean score of each training seed, and their mean and spread."""
    import numpy as np

    out = {}
    for pipeline, by_seed in runs.items():
        entry: dict[str, Any] = {"seeds": list(by_seed)}
        for m in metrics:
            values = [float(np.mean([p.scores[m] for p in preds])) for preds in by_seed.values()]
            entry[m] = {
                "per_seed": values,
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "min": min(values),
                "max": max(values),
            }
        out[pipeline] = entry
    return out


def view_table(
    views: dict[str, dict[str, list[Prediction]]],
    metrics: Sequence[str],
    samples: int,
    seed: int,
    oracle: str,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Scores with intervals of each model (base, each fine-tuned pipeline) under each context;
    `oracle` says in words what the oracle context is; `labels` are the examples' clusters."""
    return {
        "oracle": oracle,
        "models": {
            model: {
                context: {m: asdict(bootstrap([p.scores[m] for p in preds], samples, seed, labels)) for m in metrics}
                for context, preds in by_context.items()
            }
            for model, by_context in views.items()
        },
    }
