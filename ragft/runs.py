"""Reading finished run folders back: `ragft report` re-renders one run or sets several
side by side."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragft.aggregate import aggregate, in_order
from ragft.arms import Arm
from ragft.config import PIPELINE_SECTIONS, Config, ExperimentConfig, PricesConfig, saved_config, saved_section
from ragft.errors import InputError
from ragft.io import read_json, read_jsonl, write_text_atomic
from ragft.metrics import label, metric_names
from ragft.optimize import prompt_dir
from ragft.predict import prediction_from_row
from ragft.prompts import PromptTemplate
from ragft.report import markdown
from ragft.report_files import write_report
from ragft.types import Prediction
from ragft.verdict import MONEY


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, list[Prediction]], dict[str, str]]:
    """(report, predictions per variant in one shared example order, passage texts by chunk id)."""
    run = Path(run_dir)
    if not (run / "report.json").is_file():
        raise InputError("not a finished ragft run (no report.json)", run)
    report = read_json(run / "report.json")
    predictions = {variant: _predictions(run, variant) for variant in report["variants"]}
    order = report.get("example_order") or list(report.get("clustering", {}).get("groups", {}))
    if predictions and all(sorted(order) == [p.example_id for p in preds] for preds in predictions.values()):
        # the run's own order, so a resample draws the same examples and the numbers come out the same
        predictions = {variant: in_order(preds, order) for variant, preds in predictions.items()}
    passages = {}
    for chunks in sorted((run / "index").rglob("chunks.jsonl")) if (run / "index").is_dir() else []:
        passages.update({row["id"]: row["text"] for _, row in read_jsonl(chunks)})
    return report, predictions, passages


def run_config(run_dir: str | Path) -> Config:
    """The settings a run folder was made with (its config.json)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError("not a ragft run folder (no config.json: run `ragft compare` into it first)", run_dir)
    return saved_config(read_json(path))


def run_pipeline(run_dir: str | Path, config: Config, name: str) -> Arm:
    """One pipeline of a run as it ran (its pipelines.json entry): template, what it shows,
    whether it trains, and its own settings over the experiment's."""
    path = Path(run_dir) / "pipelines.json"
    if not path.is_file():
        raise InputError("not a ragft run folder (no pipelines.json)", run_dir)
    saved = read_json(path)
    if name not in saved:
        close = difflib.get_close_matches(name, list(saved), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"no pipeline {name!r} in this run{hint} (it has {', '.join(saved)})", run_dir)
    entry = saved[name]
    sections = {s: saved_section(s, entry[s]) for s in PIPELINE_SECTIONS if s in entry}
    settings = dataclasses.replace(config, pipelines=[], **sections)
    optimized = entry.get("optimized", prompt_dir(Path(run_dir), name).is_dir())  # runs before it was recorded
    template = PromptTemplate(**entry["template"])
    return Arm(name, template, entry["context"], entry["shots"], entry["trained"], settings, optimized=optimized)


def _predictions(run: Path, label: str) -> list[Prediction]:
    """A pipeline's saved predictions, in example id order (the last row of an example wins)."""
    latest = {}
    for _, row in read_jsonl(run / "predictions" / f"{label}.jsonl", torn_tail_ok=True):
        latest[row["example_id"]] = prediction_from_row(row)
    return [latest[k] for k in sorted(latest)]


def _own_prices(entry: dict[str, Any], experiment: PricesConfig) -> PricesConfig:
    """A pipeline's prices as its pipelines.json entry holds them (the experiment's for runs before)."""
    return saved_section("prices", entry["prices"]) if "prices" in entry else experiment


def rerender(run_dir: str | Path, pair: tuple[str, str] | None = None) -> str:
    """Write report.md and report.html of a run again (e.g. for another pair); return the Markdown.

    Scores, intervals and comparisons are recomputed from the saved predictions, so a run
    made by an older ragft gets today's report; measured costs are kept as recorded.
    """
    report, predictions, passages = load_run(run_dir)
    experiment, prices = ExperimentConfig(), PricesConfig()
    if (Path(run_dir) / "config.json").is_file():
        saved = read_json(Path(run_dir) / "config.json")
        kept = {k: v for k, v in saved.get("experiment", {}).items() if k in ("bootstrap_samples", "seed", "pairs")}
        experiment, prices = ExperimentConfig(**kept), saved_section("prices", saved.get("prices", {}))
    entries = read_json(Path(run_dir) / "pipelines.json") if (Path(run_dir) / "pipelines.json").is_file() else {}
    entries = {v: entries.get(v, {}) for v in predictions}
    costs = {v: {k: c for k, c in report["variants"][v]["costs"].items() if k not in MONEY} for v in predictions}
    metrics = metric_names(report)
    pairs = [(a, b) for a, _, b in (p.partition(":") for p in experiment.pairs)]
    seeded = {
        name: [predictions[name], *(_predictions(Path(run_dir), f"{name}@seed{s}") for s in entry["seeds"][1:])]
        for name, entry in report.get("seed_spread", {}).items()
    }
    clusters = report.get("clustering", {})
    stats = {
        "groups": clusters.get("groups"),
        "grouped_by": clusters.get("too_few", {}).get("by") or clusters.get("by", ""),
        "seeded": seeded,
        "baseline": report.get("baseline"),
        "trained": [v for v in predictions if "training" in costs[v]],
        "prices": {v: asdict(_own_prices(e, prices)) for v, e in entries.items()},
        "endpoints": [v for v, e in entries.items() if e.get("models", {}).get("endpoint")],
    }
    report.pop("warnings", None)
    report.update(aggregate(predictions, costs, experiment.bootstrap_samples, experiment.seed, metrics, pairs, **stats))
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
