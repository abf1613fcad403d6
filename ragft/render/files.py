"""Drawing a report's files into its run folder: report.md and the self-contained report.html."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragft.io import write_text_atomic
from ragft.render.html import render_html
from ragft.render.markdown import markdown

if TYPE_CHECKING:
    from ragft.report.results import Report


def write_rendered(report: Report, pair: tuple[str, str] | None = None) -> None:
    """Write report.md and report.html into the report's run folder (`pair`: the two
    pipelines whose per-example wins and losses the HTML shows; default the first and last)."""
    write_text_atomic(report.run_dir / "report.md", markdown(report.data))
    html = render_html(report.data, report.predictions, report.passages, pair)
    write_text_atomic(report.run_dir / "report.html", html)


def write_html(report: Report, path: str) -> None:
    """The self-contained HTML report (tables, plots, changed examples) at `path`."""
    write_text_atomic(path, render_html(report.data, report.predictions, report.passages))
