"""Reading finished run folders back: `ragft report` re-renders one run or sets several
side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragft.config import ExperimentConfig
from ragft.errors import InputError
from ragft.io import read_json, read_jsonl, write_text_atomic
from ragft.predict import prediction_from_row
from ragft.report import aggregate, label, markdown, metric_names
from ragft.report_files import write_report
from ragft.types import Prediction


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, list[Prediction]], dict[str, str]]:
    """(report, predictions per variant in one shared example order, passage texts by chunk id)."""
    run = Path(run_dir)
    if not (run / "report.json").is_file():
        raise InputError("not a finished ragft run (no report.json)", run)
    report = read_json(run / "report.json")
    predictions = {}
    for variant in report["variants"]:
        latest = {}
        for _, row in read_jsonl(run / "predictions" / f"{variant}.jsonl", torn_tail_ok=True):
            latest[row["example_id"]] = prediction_from_row(row)
        predictions[variant] = [latest[k] for k in sorted(latest)]
    passages = {}
    for chunks in sorted((run / "index").rglob("chunks.jsonl")) if (run / "index").is_dir() else []:
        passages.update({row["id"]: row["text"] for _, row in read_jsonl(chunks)})
    return report, predictions, passages


def rerender(run_dir: str | Path, pair: tuple[str, str] | None = None) -> str:
    """Write report.md and report.html of a run again (e.g. for another pair); return the Markdown.

    Scores, intervals and comparisons are recomputed from the saved predictions, so a run
    made by an older ragft gets today's report; measured costs are kept as recorded.
    """
    report, predictions, passages = load_run(run_dir)
    experiment = ExperimentConfig()
    if (Path(run_dir) / "config.json").is_file():
        saved = read_json(Path(run_dir) / "config.json").get("experiment", {})
        experiment = ExperimentConfig(**{k: v for k, v in saved.items() if k in ("bootstrap_samples", "seed", "pairs")})
    costs = {v: report["variants"][v]["costs"] for v in predictions}
    metrics = metric_names(report)
    pairs = [(a, b) for a, _, b in (p.partition(":") for p in experiment.pairs)]
    report.update(aggregate(predictions, costs, experiment.bootstrap_samples, experiment.seed, metrics, pairs))
    if pair is not None:
        for name in pair:
            if name not in predictions:
                raise InputError(f"variant {name!r} is not in this run (it has {', '.join(predictions)})", run_dir)
    write_report(run_dir, report, predictions, passages, pair)
    return markdown(report)


def side_by_side(run_dirs: list[str | Path]) -> str:
    """The two first metrics (F1 / EM for QA) of every variant in every run, as one Markdown table."""
    reports = [(Path(r), load_run(r)[0]) for r in run_dirs]
    variants = list(dict.fromkeys(v for _, rep in reports for v in rep["variants"]))
    header = ["variant"] + [
        f"{rep['name']} ({path.name}) " + " / ".join(label(m) for m in metric_names(rep)[:2]) for path, rep in reports
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in variants:
        cells = [v]
        for _, rep in reports:
            m = rep["variants"].get(v, {}).get("metrics")
            if m is None:
                cells.append("-")
                continue
            first, *rest = (m[name] for name in metric_names(rep)[:2])
            interval = f"{100 * first['low']:.1f}-{100 * first['high']:.1f}"
            others = [f"{100 * x['mean']:.1f}" for x in rest]
            cells.append(" / ".join([f"{100 * first['mean']:.1f} ({interval})", *others]))
        lines.append("| " + " | ".join(cells) + " |")
    setups = [
        f"- {path}: {rep['generator']}, {rep['test_examples']} test examples, "
        f"git {rep['environment'].get('git_sha') or '?'}"
        for path, rep in reports
    ]
    return "\n".join(["# Runs side by side", "", *lines, "", *setups, ""])


def write_side_by_side(run_dirs: list[str | Path], out: str | Path) -> Path:
    path = Path(out) / "compare.md"
    write_text_atomic(path, side_by_side(run_dirs))
    return path
