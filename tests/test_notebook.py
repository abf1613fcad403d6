"""The notebooks execute top to bottom and draw their plots."""

import json

import nbformat
from helpers import ROOT, TINY
from nbclient import NotebookClient


def _execute(name: str, overrides: list[str], monkeypatch) -> list[dict]:
    """Run a notebook with `key.sub=value` overrides; return its code cells' outputs (none an error)."""
    monkeypatch.setenv("RAGFT_NOTEBOOK_OVERRIDES", json.dumps(overrides))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("| rag+ft |" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    return outputs


def test_compare_notebook_runs_and_plots(tmp_path, monkeypatch):
    _execute("01_compare.ipynb", [*TINY, f"experiment.output_dir={json.dumps(str(tmp_path))}"], monkeypatch)
    assert (tmp_path / "handbook" / "report.json").is_file()


def test_text_to_sql_notebook_runs_and_plots(tmp_path, monkeypatch):
    small = {"run_dir": str(tmp_path / "run"), "test_limit": 6, "train_limit": 16, "max_steps": 2}
    small.update(max_new_tokens=48, pipelines=["prompt", "rag+ft"])
    monkeypatch.setenv("RAGFT_NOTEBOOK_SMALL", json.dumps(small))
    outputs = _execute("02_text_to_sql.ipynb", [], monkeypatch)
    assert any("refused" in o.get("text", "") for o in outputs)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert list(report["pipelines"]) == ["prompt", "rag+ft"] and report["metric_names"] == ["ex", "valid"]


def test_pipelines_notebook_builds_four_pipelines_and_plots(tmp_path, monkeypatch):
    small = {"run_dir": str(tmp_path / "run"), "test_limit": 6, "train_limit": 16, "max_steps": 2}
    small.update(max_new_tokens=12, general=None)
    monkeypatch.setenv("RAGFT_NOTEBOOK_SMALL", json.dumps(small))
    outputs = _execute("03_pipelines.ipynb", [], monkeypatch)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert list(report["pipelines"]) == ["prompt", "rag-dense", "rag-hybrid", "rag+ft"]
    assert report["pipelines"]["rag-hybrid"]["settings"]["template"] == "terse-notes"
    assert any("rag-hybrid - rag-dense: F1" in o.get("text", "") for o in outputs)
    assert list(report["context_views"]["models"]) == ["base", "rag+ft"]
