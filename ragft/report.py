"""The comparison report: quality with bootstrap intervals, paired differences, costs,
environment; written as report.json and report.md."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.io import library_versions, write_json_atomic, write_text_atomic
from ragft.stats import bootstrap, paired_difference

if TYPE_CHECKING:
    from ragft.config import Config
    from ragft.types import Prediction

METRICS = ("f1", "em")


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


def build_report(
    config: Config,
    predictions: dict[str, list[Prediction]],
    costs: dict[str, dict[str, Any]],
    retrieval: dict[str, Any],
) -> dict[str, Any]:
    """Aggregate per-variant predictions into the report dictionary."""
    samples, seed = config.experiment.bootstrap_samples, config.experiment.seed
    variants: dict[str, Any] = {}
    for name, preds in predictions.items():
        seconds = [p.seconds for p in preds]
        variants[name] = {
            "n": len(preds),
            "metrics": {m: asdict(bootstrap([p.scores[m] for p in preds], samples, seed)) for m in METRICS},
            "costs": {
                "prompt_tokens_per_query": sum(p.prompt_tokens for p in preds) / max(1, len(preds)),
                "completion_tokens_per_query": sum(p.completion_tokens for p in preds) / max(1, len(preds)),
                "seconds_per_query_p50": _percentile(seconds, 50),
                "seconds_per_query_p95": _percentile(seconds, 95),
                **costs.get(name, {}),
            },
        }
    names = list(predictions)
    comparisons = []
    for a, b in zip(names, names[1:]):
        ids = [p.example_id for p in predictions[a]]
        if ids != [p.example_id for p in predictions[b]]:
            raise ValueError(f"variants {a} and {b} were scored on different examples")
        for m in METRICS:
            d = paired_difference(
                [p.scores[m] for p in predictions[a]], [p.scores[m] for p in predictions[b]], samples, seed
            )
            comparisons.append({"from": a, "to": b, "metric": m, **asdict(d)})
    return {
        "name": config.experiment.name,
        "generator": config.models.generator,
        "embedder": config.models.embedder,
        "test_examples": len(next(iter(predictions.values()), [])),
        "retrieval": retrieval,
        "variants": variants,
        "comparisons": comparisons,
        "environment": environment(),
    }


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: quality table, paired differences, costs."""
    lines = [
        f"# {report['name']}: {report['generator']} on {report['test_examples']} test examples",
        "",
        "| variant | F1 (95% CI) | EM (95% CI) | prompt tok/q | s/q p50 | s/q p95 | train s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in report["variants"].items():
        f1, em, c = v["metrics"]["f1"], v["metrics"]["em"], v["costs"]
        train = c.get("training", {}).get("seconds")
        lines.append(
            f"| {name} | {100 * f1['mean']:.1f} ({100 * f1['low']:.1f}-{100 * f1['high']:.1f}) "
            f"| {100 * em['mean']:.1f} ({100 * em['low']:.1f}-{100 * em['high']:.1f}) "
            f"| {c['prompt_tokens_per_query']:.0f} | {c['seconds_per_query_p50']:.3f} | {c['seconds_per_query_p95']:.3f} "
            f"| {'-' if train is None else f'{train:.0f}'} | {_mb(c.get('peak_rss_bytes'))} |"
        )
    lines += ["", "Paired differences (later minus earlier rung, same examples, paired bootstrap):", ""]
    lines += ["| step | metric | difference (95% CI) | p |", "|---|---|---|---|"]
    for d in report["comparisons"]:
        lines.append(
            f"| {d['from']} -> {d['to']} | {d['metric'].upper()} | {100 * d['mean']:+.1f} "
            f"({100 * d['low']:+.1f} to {100 * d['high']:+.1f}) | {d['p_value']:.4f} |"
        )
    r = report["retrieval"]
    recall = ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k.startswith("recall"))
    lines += ["", f"Retrieval over {r['documents']} documents, {r['chunks']} chunks: {recall}.", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path, report: dict[str, Any]) -> None:
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / "report.json", report)
    write_text_atomic(run_dir / "report.md", markdown(report))
