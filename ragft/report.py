"""The comparison report: quality with bootstrap intervals, paired differences, costs,
environment; written as report.json and report.md."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.io import library_versions
from ragft.stats import bootstrap, mcnemar, paired_difference

if TYPE_CHECKING:
    from ragft.types import Prediction

METRICS = ("f1", "em")
"""Question answering's metrics; the first of a task's metrics is its primary one."""
LABELS = {"f1": "F1", "em": "EM", "ex": "EX", "valid": "valid SQL"}


def metric_names(report: dict[str, Any]) -> list[str]:
    """The report's metrics, primary first (reports from before tasks other than QA: F1, EM)."""
    return list(report.get("metric_names", METRICS))


def label(metric: str) -> str:
    return LABELS.get(metric, metric.upper())


def environment() -> dict[str, Any]:
    """Versions, hardware and the project's git sha, for the run folder."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "versions": library_versions(
            "ragft", "torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "langchain-text-splitters"
        ),
    }
    try:
        import torch

        env["threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        from ragft.generation import pick_dtype

        env["auto_dtype"] = str(pick_dtype("auto")).removeprefix("torch.")  # what models.dtype=auto ran in
    except ImportError:
        pass
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        env["git_sha"] = sha.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_sha"] = None
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def aggregate(
    predictions: dict[str, list[Prediction]],
    costs: dict[str, dict[str, Any]],
    samples: int,
    seed: int,
    metrics: Sequence[str] = METRICS,
    pairs: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Per-variant scores with intervals, paired comparisons of every pair (or of `pairs`),
    and what each step to the next variant buys."""
    variants: dict[str, Any] = {}
    for name, preds in predictions.items():
        seconds = [p.seconds for p in preds]
        variants[name] = {
            "n": len(preds),
            "metrics": {m: asdict(bootstrap([p.scores[m] for p in preds], samples, seed)) for m in metrics},
            "costs": {
                "prompt_tokens_per_query": sum(p.prompt_tokens for p in preds) / max(1, len(preds)),
                "completion_tokens_per_query": sum(p.completion_tokens for p in preds) / max(1, len(preds)),
                "seconds_per_query_p50": _percentile(seconds, 50),
                "seconds_per_query_p95": _percentile(seconds, 95),
                "queries_per_second": len(preds) / max(1e-9, sum(seconds)),
                **costs.get(name, {}),
            },
        }
    names = list(predictions)
    tested = list(pairs) or [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    steps_of = list(zip(names, names[1:]))
    comparisons = []
    for a, b in dict.fromkeys([*tested, *steps_of]):
        comparisons += _compare_pair(a, b, predictions, samples, seed, metrics)
    steps = [_step(a, b, variants, comparisons, metrics[0]) for a, b in steps_of]
    comparisons = [c for c in comparisons if (c["from"], c["to"]) in tested]
    return {"variants": variants, "comparisons": comparisons, "steps": steps}


def seed_spread(runs: dict[str, dict[int, list[Prediction]]], metrics: Sequence[str] = METRICS) -> dict[str, Any]:
    """Per variant: the mean score of each training seed, and their mean and spread."""
    import numpy as np

    out = {}
    for variant, by_seed in runs.items():
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
        out[variant] = entry
    return out


def view_table(
    views: dict[str, dict[str, list[Prediction]]], metrics: Sequence[str], samples: int, seed: int, oracle: str
) -> dict[str, Any]:
    """Scores with intervals of each model (base, each fine-tuned variant) under each context;
    `oracle` says in words what the oracle context is."""
    return {
        "oracle": oracle,
        "models": {
            model: {
                context: {m: asdict(bootstrap([p.scores[m] for p in preds], samples, seed)) for m in metrics}
                for context, preds in by_context.items()
            }
            for model, by_context in views.items()
        },
    }


def _compare_pair(
    a: str, b: str, predictions: dict[str, list[Prediction]], samples: int, seed: int, metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """b against a on the same examples: paired bootstrap per metric, exact McNemar for 0/1 metrics."""
    if [p.example_id for p in predictions[a]] != [p.example_id for p in predictions[b]]:
        raise ValueError(f"variants {a} and {b} were scored on different examples")
    rows = []
    for m in metrics:
        x, y = [p.scores[m] for p in predictions[a]], [p.scores[m] for p in predictions[b]]
        row = {"from": a, "to": b, "metric": m, **asdict(paired_difference(x, y, samples, seed))}
        if {*x, *y} <= {0.0, 1.0}:
            row["only_from_right"], row["only_to_right"], row["mcnemar_p"] = mcnemar(x, y)
        rows.append(row)
    return rows


def _step(a: str, b: str, variants: dict[str, Any], comparisons: list[dict[str, Any]], primary: str) -> dict[str, Any]:
    """What moving up one rung buys (points of the primary metric) and costs (seconds, tokens, training)."""
    ca, cb = variants[a]["costs"], variants[b]["costs"]
    gain = next(c for c in comparisons if c["from"] == a and c["to"] == b and c["metric"] == primary)
    d_seconds = cb["seconds_per_query_p50"] - ca["seconds_per_query_p50"]
    d_tokens = cb["prompt_tokens_per_query"] - ca["prompt_tokens_per_query"]
    return {
        "from": a,
        "to": b,
        "metric": primary,
        "points": 100 * gain["mean"],
        "points_low": 100 * gain["low"],
        "points_high": 100 * gain["high"],
        "added_seconds_per_query": d_seconds,
        "added_prompt_tokens_per_query": d_tokens,
        "added_training_seconds": cb.get("training", {}).get("seconds", 0.0)
        - ca.get("training", {}).get("seconds", 0.0),
        "points_per_added_second": 100 * gain["mean"] / d_seconds if d_seconds > 0 else None,
        "points_per_100_added_tokens": 100 * 100 * gain["mean"] / d_tokens if d_tokens > 0 else None,
    }


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _ci(m: dict[str, float]) -> str:
    return f"{100 * m['mean']:.1f} ({100 * m['low']:.1f}-{100 * m['high']:.1f})"


def _mb(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f}" if n < 10 * 2**20 else f"{n / 2**20:.0f}"


Table = tuple[str, list[str], list[list[str]]]
"""(caption, header, rows) of display strings, rendered as Markdown or HTML."""


def tables(report: dict[str, Any]) -> list[Table]:
    """The report's tables: quality and costs, paired differences, ladder steps."""
    names = metric_names(report)
    primary = label(names[0])
    quality = []
    for name, v in report["variants"].items():
        c = v["costs"]
        train = c.get("training", {}).get("seconds")
        quality.append(
            [
                name,
                *(_ci(v["metrics"][m]) for m in names),
                f"{c['prompt_tokens_per_query']:.0f}",
                f"{c['completion_tokens_per_query']:.1f}",
                f"{c['seconds_per_query_p50']:.3f}",
                f"{c['seconds_per_query_p95']:.3f}",
                f"{c['queries_per_second']:.2f}",
                "-" if train is None else f"{train:.0f}",
                _mb(c.get("adapter_bytes")),
                _mb(c.get("peak_rss_bytes")) + (f" (GPU {_mb(c['peak_gpu_bytes'])})" if "peak_gpu_bytes" in c else ""),
            ]
        )
    diffs = [
        [
            d["from"],
            d["to"],
            label(d["metric"]),
            _diff(d),
            _p(d["p_value"]),
            _p(d["mcnemar_p"]) if "mcnemar_p" in d else "-",
        ]
        for d in report["comparisons"]
    ]
    steps = [
        [
            f"{st['from']} -> {st['to']}",
            f"{st['points']:+.1f} ({st['points_low']:+.1f} to {st['points_high']:+.1f})",
            f"{st['added_seconds_per_query']:+.3f}",
            f"{st['added_prompt_tokens_per_query']:+.0f}",
            f"{st['added_training_seconds']:+.0f}",
            _num(st["points_per_added_second"]),
            _num(st["points_per_100_added_tokens"]),
        ]
        for st in report.get("steps", [])
    ]
    spread = [
        [
            v,
            ", ".join(str(s) for s in e["seeds"]),
            ", ".join(f"{100 * x:.1f}" for x in e[names[0]]["per_seed"]),
            f"{100 * e[names[0]]['mean']:.1f} ± {100 * e[names[0]]['std']:.1f}",
            f"{100 * e[names[0]]['min']:.1f}-{100 * e[names[0]]['max']:.1f}",
        ]
        for v, e in report.get("seed_spread", {}).items()
    ]
    seeds_table: list[Table] = []
    if spread:
        seeds_table = [
            (
                f"Fine-tuned arms across training seeds ({primary})",
                ["variant", "seeds", f"{primary} per seed", "mean ± sd", "range"],
                spread,
            )
        ]
    return [
        (
            "Quality with 95% bootstrap intervals, and costs per query (s/q: batch time / batch size)",
            [
                "variant",
                *(f"{label(m)} (95% CI)" for m in names),
                "prompt tok/q",
                "output tok/q",
                "s/q p50",
                "s/q p95",
                "q/s",
                "train s",
                "adapter MB",
                "peak RSS MB",
            ],
            quality,
        ),
        (
            "Paired differences (`to` minus `from`, same examples; paired bootstrap, exact McNemar for 0/1 metrics)",
            ["from", "to", "metric", "difference (95% CI)", "p", "McNemar p"],
            diffs,
        ),
        (
            "What each step up the ladder buys and costs",
            [
                "step",
                f"{primary} points (95% CI)",
                "+ s/query",
                "+ prompt tokens/query",
                "+ training s",
                f"{primary} pts per added s/query",
                f"{primary} pts per 100 added tokens",
            ],
            steps,
        ),
        *seeds_table,
        *_views_table(report),
        *_forgetting_table(report),
        *_error_table(report),
    ]


def _views_table(report: dict[str, Any]) -> list[Table]:
    """Each model under no context, oracle context and retrieved context (primary metric)."""
    views = report.get("context_views")
    if not views:
        return []
    primary = metric_names(report)[0]
    contexts = list(next(iter(views["models"].values())))
    rows = [[model, *(_ci(by[c][primary]) for c in contexts)] for model, by in views["models"].items()]
    caption = (
        f"Each model shown no context, oracle context ({views['oracle']}) and retrieved context: "
        f"{label(primary)} (95% CI)"
    )
    return [(caption, ["model", *contexts], rows)]


def _forgetting_table(report: dict[str, Any]) -> list[Table]:
    """Base and fine-tuned models on general questions outside the task, and each change."""
    f = report.get("forgetting")
    if not f:
        return []
    rows = []
    for model, m in f["models"].items():
        change = f["changes"].get(model)
        delta = "-" if change is None else _diff(change["f1"])
        rows.append([model, _ci(m["f1"]), _ci(m["em"]), delta, "-" if change is None else _p(change["f1"]["p_value"])])
    caption = f"Forgetting check: {f['n']} general questions outside the task, no context (95% CI)"
    return [(caption, ["model", "F1", "EM", "F1 change vs base", "p"], rows)]


def _diff(d: dict[str, float]) -> str:
    return f"{100 * d['mean']:+.1f} ({100 * d['low']:+.1f} to {100 * d['high']:+.1f})"


def _error_table(report: dict[str, Any]) -> list[Table]:
    """Failures grouped by kind per variant, for tasks whose predictions can fail (SQL)."""
    errors: dict[str, dict[str, int]] = report.get("errors", {})
    kinds = sorted({k for counts in errors.values() for k in counts})
    if not kinds:
        return []
    rows = [[v, *(str(counts.get(k, 0)) for k in kinds)] for v, counts in errors.items()]
    return [("Failed predictions by kind (test examples)", ["variant", *kinds], rows)]


def retrieval_line(report: dict[str, Any]) -> str:
    r = report["retrieval"]
    if "documents" not in r:
        return str(r.get("line", ""))
    recall = ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k.startswith("recall"))
    size = f", index {_mb(r['index_bytes'])} MB" if "index_bytes" in r else ""
    left_out = [
        f"{n} {what} skipped"
        for n, what in ((r.get("empty_documents", 0), "empty"), (len(r.get("unreadable_skipped", [])), "unreadable"))
        if n
    ]
    left = f" ({', '.join(left_out)})" if left_out else ""
    if not recall:
        return f"A corpus of {r['documents']} documents{left}, {r['chunks']} chunks; no pipeline retrieves."
    return f"Retrieval over {r['documents']} documents{left}, {r['chunks']} chunks{size}: {recall}."


def title(report: dict[str, Any]) -> str:
    return f"{report['name']}: {report['generator']} on {report['test_examples']} test examples"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    body = "".join(markdown_table(*table) for table in tables(report))
    return f"# {title(report)}\n\n{body}{retrieval_line(report)}\n"


def markdown_table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    """A captioned Markdown table followed by a blank line."""
    lines = [f"{caption}:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n"
