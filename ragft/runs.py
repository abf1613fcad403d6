"""Finished run folders read back: `ragft report` draws one run's report again (its
statistics recomputed by the code a run uses) or sets several runs side by side."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragft.config import ExperimentConfig, PricesConfig, saved_section
from ragft.errors import InputError
from ragft.io import read_json, write_json_atomic, write_text_atomic
from ragft.metrics import label, metric_names
from ragft.render.files import write_rendered
from ragft.render.markdown import markdown
from ragft.report.aggregate import StatisticsInputs, statistics
from ragft.report.results import Report, saved_predictions
from ragft.report.verdict import MONEY


def rerender(run_dir: str | Path, pair: tuple[str, str] | None = None) -> str:
    """Write report.json, report.md and report.html of a run again (e.g. for another pair);
    return the Markdown.

    Scores, intervals and comparisons are recomputed from the saved predictions with the
    inputs the run saved, so a run made by an older ragft gets today's report; measured
    costs are kept as recorded.
    """
    report = Report.load(run_dir)
    predictions = report.predictions
    if pair is not None:
        for name in pair:
            if name not in predictions:
                raise InputError(f"pipeline {name!r} is not in this run (it has {', '.join(predictions)})", run_dir)
    data = dict(report.data)
    saved = data.get("statistics_inputs")
    inputs = StatisticsInputs.from_dict(saved) if saved else _inputs_of_older_run(Path(run_dir), data)
    costs = {n: {k: c for k, c in data["pipelines"][n]["costs"].items() if k not in MONEY} for n in predictions}
    seeded = {
        name: [predictions[name], *(saved_predictions(run_dir, f"{name}@seed{s}") for s in seeds[1:])]
        for name, seeds in inputs.seeds.items()
    }
    data.pop("warnings", None)
    settings = {name: entry["settings"] for name, entry in data["pipelines"].items() if "settings" in entry}
    data.update(statistics(predictions, costs, inputs, seeded, data.get("baseline")))
    for name, own in settings.items():  # what sets each pipeline apart, as the run recorded it
        data["pipelines"][name]["settings"] = own
    data["statistics_inputs"] = asdict(inputs)
    write_json_atomic(Path(run_dir) / "report.json", data)
    again = Report.from_dict(data, run_dir, predictions, report.passages)
    write_rendered(again, pair)
    return markdown(data)


def _inputs_of_older_run(run: Path, report: dict[str, Any]) -> StatisticsInputs:
    """The statistics inputs of a run made before they were saved, from its config.json,
    pipelines.json and report.json."""
    experiment, prices = ExperimentConfig(), PricesConfig()
    if (run / "config.json").is_file():
        saved = read_json(run / "config.json")
        kept = {k: v for k, v in saved.get("experiment", {}).items() if k in ("bootstrap_samples", "seed", "pairs")}
        experiment, prices = ExperimentConfig(**kept), saved_section("prices", saved.get("prices", {}))
    entries = read_json(run / "pipelines.json") if (run / "pipelines.json").is_file() else {}
    names = list(report["pipelines"])
    entries = {n: entries.get(n, {}) for n in names}
    clusters = report.get("clustering", {})
    own = {n: saved_section("prices", e["prices"]) if "prices" in e else prices for n, e in entries.items()}
    return StatisticsInputs(
        samples=experiment.bootstrap_samples,
        seed=experiment.seed,
        metrics=metric_names(report),
        pairs=[(a, b) for a, _, b in (p.partition(":") for p in experiment.pairs)],
        groups=clusters.get("groups"),
        grouped_by=clusters.get("too_few", {}).get("by") or clusters.get("by", ""),
        seeds={name: entry["seeds"] for name, entry in report.get("seed_spread", {}).items()},
        trained=[n for n in names if "training" in report["pipelines"][n]["costs"]],
        prices={n: asdict(p) for n, p in own.items()},
        endpoints=[n for n, e in entries.items() if e.get("models", {}).get("endpoint")],
    )


def side_by_side(run_dirs: list[str | Path]) -> str:
    """The two first metrics (F1 / EM for QA) of every pipeline in every run, as one Markdown table."""
    reports = [(Path(r), Report.load(r).data) for r in run_dirs]
    names = list(dict.fromkeys(v for _, rep in reports for v in rep["pipelines"]))
    header = ["pipeline"] + [
        f"{rep['name']} ({path.name}) " + " / ".join(label(m) for m in metric_names(rep)[:2]) for path, rep in reports
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in names:
        cells = [v]
        for _, rep in reports:
            m = rep["pipelines"].get(v, {}).get("metrics")
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
