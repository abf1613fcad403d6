"""The report of an experiment, typed: what each pipeline scored (with intervals) and cost,
the paired tests between them, and the predictions they were computed from. The runner
returns it; the renderers (`ragft.render`: Markdown, HTML, plots) read it and nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ragft.errors import InputError
from ragft.io import read_json, read_jsonl, write_text_atomic
from ragft.metrics import label
from ragft.report.aggregate import in_order
from ragft.stats import Estimate
from ragft.types import Prediction, prediction_from_row


@dataclass(frozen=True)
class PipelineResult:
    """One pipeline's scores and costs on the test examples."""

    name: str
    n: int
    metrics: dict[str, Estimate]
    """Mean and 95% bootstrap interval per metric (0-1 scale)."""
    costs: dict[str, Any]
    """Per-query tokens and seconds, training time, peak memory, adapter size."""
    settings: dict[str, Any] = field(default_factory=dict)
    """What sets the pipeline apart: template, generator, retrieval, fine-tuning."""


@dataclass(frozen=True)
class Comparison:
    """`to` minus `from` on the same examples, for one metric."""

    from_: str
    to: str
    metric: str
    mean: float
    low: float
    high: float
    p_value: float
    """Two-sided paired bootstrap p-value."""
    mcnemar_p: float | None = None
    """Exact McNemar p-value, for 0/1 metrics (only where test examples are independent)."""
    p_holm: float | None = None
    """The p-value adjusted by Holm over every pair of pipelines (per metric)."""
    detectable: float | None = None
    """The smallest true difference this test finds 80% of the time at alpha 0.05."""


@dataclass(frozen=True)
class Report:
    """An experiment's results; `data` is report.json as written in `run_dir`."""

    name: str
    metric_names: list[str]
    pipelines: dict[str, PipelineResult]
    comparisons: list[Comparison]
    run_dir: Path
    data: dict[str, Any] = field(repr=False)
    given_predictions: dict[str, list[Prediction]] | None = field(default=None, repr=False, compare=False)
    given_passages: dict[str, str] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def predictions(self) -> dict[str, list[Prediction]]:
        """Every pipeline's scored predictions, in the run's example order (read from the run
        folder when the report was loaded from it)."""
        if self.given_predictions is not None:
            return self.given_predictions
        predictions = {name: saved_predictions(self.run_dir, name) for name in self.pipelines}
        order = self.data.get("example_order") or list(self.data.get("clustering", {}).get("groups", {}))
        if predictions and all(sorted(order) == [p.example_id for p in ps] for ps in predictions.values()):
            # the run's own order, so a resample draws the same examples and the numbers come out the same
            predictions = {name: in_order(ps, order) for name, ps in predictions.items()}
        return predictions

    @cached_property
    def passages(self) -> dict[str, str]:
        """The text of every retrieved passage by id (what the HTML report shows beside an answer)."""
        if self.given_passages is not None:
            return self.given_passages
        index = self.run_dir / "index"
        out: dict[str, str] = {}
        for chunks in sorted(index.rglob("chunks.jsonl")) if index.is_dir() else []:
            out.update({row["id"]: row["text"] for _, row in read_jsonl(chunks)})
        return out

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        run_dir: str | Path,
        predictions: dict[str, list[Prediction]] | None = None,
        passages: dict[str, str] | None = None,
    ) -> Report:
        data = _current(data)
        pipelines = {
            name: PipelineResult(
                name,
                v["n"],
                {m: Estimate(**e) for m, e in v["metrics"].items()},
                v["costs"],
                v.get("settings", {}),
            )
            for name, v in data["pipelines"].items()
        }
        comparisons = [
            Comparison(
                c["from"],
                c["to"],
                c["metric"],
                c["mean"],
                c["low"],
                c["high"],
                c["p_value"],
                c.get("mcnemar_p"),
                c.get("p_holm"),
                c.get("detectable"),
            )
            for c in data["comparisons"]
        ]
        metrics = list(data.get("metric_names", ["f1", "em"]))
        return cls(data["name"], metrics, pipelines, comparisons, Path(run_dir), data, predictions, passages)

    @classmethod
    def load(cls, run_dir: str | Path) -> Report:
        """The report of a finished run folder."""
        path = Path(run_dir) / "report.json"
        if not path.is_file():
            raise InputError("not a finished ragft run (no report.json)", run_dir)
        return cls.from_dict(read_json(path), run_dir)

    @property
    def primary(self) -> str:
        return self.metric_names[0]

    @property
    def verdict(self) -> dict[str, Any]:
        """Best pipeline, cheapest one not significantly worse, the quality-cost frontier,
        warnings, break-even points and a sentence per ladder step (`ragft.report.verdict`)."""
        return self.data.get("verdict", {})

    @property
    def baseline(self) -> dict[str, Any] | None:
        """The constant-answer baseline (the most frequent training answer), where answers repeat."""
        return self.data.get("baseline")

    def comparison(self, a: str, b: str, metric: str | None = None) -> Comparison:
        """The paired test of `b` against `a` on one metric (default: the primary one)."""
        metric = metric or self.primary
        for c in self.comparisons:
            if (c.from_, c.to, c.metric) == (a, b, metric):
                return c
        tested = sorted({(c.from_, c.to) for c in self.comparisons})
        raise KeyError(f"no paired test of {b!r} against {a!r} on {metric}; tested: {tested}")

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON (written to `path` too, when given)."""
        text = json.dumps(self.data, indent=2, ensure_ascii=False)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    def predictions_dataset(self, name: str) -> Any:
        """One pipeline's scored predictions as a Hugging Face `datasets.Dataset` (a row per
        test example: its prompt, output, gold answers, retrieved ids, scores, tokens and
        seconds), for the analysis people do in notebooks."""
        from dataclasses import asdict

        from datasets import Dataset

        if name not in self.predictions:
            raise KeyError(f"no pipeline {name!r} in this report (it has {', '.join(self.predictions)})")
        return Dataset.from_list([asdict(p) for p in self.predictions[name]])

    def table(self) -> str:
        """Quality and cost per pipeline as a plain-text table (no pandas needed)."""
        metrics = self.metric_names
        header = ["pipeline", *(f"{label(m)} (95% CI)" for m in metrics)]
        header += ["prompt tok/q", "s/q p50", "train s"]
        rows = [header]
        for r in self.pipelines.values():
            scores = [f"{100 * e.mean:.1f} ({100 * e.low:.1f}-{100 * e.high:.1f})" for e in r.metrics.values()]
            train = r.costs.get("training", {}).get("seconds")
            rows.append(
                [
                    r.name,
                    *scores,
                    f"{r.costs['prompt_tokens_per_query']:.0f}",
                    f"{r.costs['seconds_per_query_p50']:.3f}",
                    "-" if train is None else f"{train:.0f}",
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _current(data: dict[str, Any]) -> dict[str, Any]:
    """report.json as this release writes it: a report written before the renames holds its
    pipelines under `variants`, each pipeline's settings under `pipeline`."""
    if "variants" not in data:
        return data
    renamed = {
        name: {("settings" if k == "pipeline" else k): v for k, v in entry.items()}
        for name, entry in data["variants"].items()
    }
    return {("pipelines" if k == "variants" else k): (renamed if k == "variants" else v) for k, v in data.items()}


def saved_predictions(run_dir: str | Path, label: str) -> list[Prediction]:
    """A pipeline's saved predictions, in example id order (the last row of an example wins)."""
    latest = {}
    for _, row in read_jsonl(Path(run_dir) / "predictions" / f"{label}.jsonl", torn_tail_ok=True):
        latest[row["example_id"]] = prediction_from_row(row)
    return [latest[k] for k in sorted(latest)]
