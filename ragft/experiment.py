"""The Python API's experiment, and `compare` for TOML configs: both run pipelines through
the runner (`ragft.runner`), then draw report.md and report.html (`ragft.render`).

    report = ragft.Experiment(task, pipelines, run_dir="runs/mine").run()
    print(report.table())
    ragft.write_html(report, "runs/mine/report.html")
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ragft.config import Config, PricesConfig
from ragft.pipeline import Pipeline, Task, experiment_settings, pipelines_run
from ragft.render.files import write_rendered
from ragft.render.markdown import markdown
from ragft.report.results import Report

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.retrieval import Embedder
    from ragft.runner.run import Run


def compare(
    config: Config,
    run_dir: str | Path | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
    only: Sequence[str] = (),
) -> Report:
    """Run every pipeline of the config (the `experiment.presets`, then each `[[pipelines]]`
    table) and return the report; report.json, report.md and report.html are written to the
    run folder.

    Whatever a previous run of the same settings finished (index, retrieval, adapters,
    predictions) is reused; an interrupted run continues where it stopped. A `generator`
    or `embedder` passed in is used by the pipelines whose settings name it. With `only`,
    just the pipelines named there run; the report covers every other pipeline of the config
    whose predictions the run folder holds under the keys the config gives them now.
    """
    from ragft.resources import Resources
    from ragft.runner.run import Run, run_dir_for, run_pipelines
    from ragft.settings import resolve_pipelines

    resolved = resolve_pipelines(config)
    folder = Path(run_dir) if run_dir is not None else run_dir_for(config)
    resources = Resources([generator] if generator else [], [embedder] if embedder else [])
    report = run_pipelines(Run(folder, config, resources), resolved, only)
    write_rendered(report)
    if config.tracking.mlflow_uri:
        from ragft.io import write_json_atomic
        from ragft.tracking import log_to_mlflow

        uri, name = config.tracking.mlflow_uri, config.tracking.mlflow_experiment
        report.data["mlflow_run_id"] = log_to_mlflow(uri, name, folder, config, report.data)
        write_json_atomic(folder / "report.json", report.data)
    return report


class Experiment:
    """Pipelines compared on one task: the same test examples, scored with bootstrap
    intervals and paired tests between every pair (or the `pairs` named), beside what each
    costs; with `context_views`, every fine-tuned pipeline and its base model are also shown
    no, oracle and retrieved context, and `general_examples` adds the forgetting check.
    `prices` (`ragft.Prices(...)`) turns measured costs into dollars."""

    def __init__(
        self,
        task: Task,
        pipelines: Sequence[Pipeline],
        run_dir: str | Path = "runs/experiment",
        *,
        pairs: Sequence[tuple[str, str]] = (),
        seed: int = 0,
        seeds: Sequence[int] = (),
        bootstrap_samples: int = 2000,
        context_views: bool = True,
        general_examples: str | Path | None = None,
        name: str | None = None,
        prices: PricesConfig | None = None,
    ):
        self.task = task
        self.pipelines = list(pipelines)
        self.folder = Path(run_dir)
        self.config, self.resolved = experiment_settings(
            task,
            self.pipelines,
            self.folder,
            pairs=pairs,
            seed=seed,
            seeds=seeds,
            bootstrap_samples=bootstrap_samples,
            context_views=context_views,
            general_examples=general_examples,
            name=name,
            prices=prices,
        )

    def _run(self) -> Run:
        return pipelines_run(self.task, self.pipelines, self.folder, self.config, self.resolved)

    def run(self) -> Report:
        """Run every pipeline (reusing whatever this run folder already holds) and report;
        report.json, report.md and report.html are written to the run folder."""
        from ragft.runner.run import run_pipelines

        report = run_pipelines(self._run(), self.resolved)
        write_rendered(report)
        return report


def write_html(report: Report, path: str | Path) -> Path:
    """The self-contained HTML report (tables, plots, changed examples) at `path`."""
    from ragft.render.files import write_html as write

    write(report, str(path))
    return Path(path)


def _show_in_notebooks() -> None:
    """A report shows itself as Markdown in Jupyter (IPython's formatter registry, so the
    report itself knows no renderer)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    if shell is not None:
        formatter = shell.display_formatter.formatters["text/markdown"]
        formatter.for_type(Report, lambda report: markdown(report.data))


_show_in_notebooks()
