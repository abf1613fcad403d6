"""Writing a report's files into its run folder: report.json, report.md and report.html."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.html_report import render_html
from ragft.io import write_json_atomic, write_text_atomic
from ragft.report import markdown

if TYPE_CHECKING:
    from ragft.types import Prediction


def write_report(
    run_dir: str | Path,
    report: dict[str, Any],
    predictions: dict[str, list[Prediction]],
    passages: dict[str, str],
    pair: tuple[str, str] | None = None,
) -> None:
    """Write report.json, report.md and the self-contained report.html into the run folder."""
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / "report.json", report)
    write_text_atomic(run_dir / "report.md", markdown(report))
    write_text_atomic(run_dir / "report.html", render_html(report, predictions, passages, pair))
