"""The HTML report: self-contained, re-rendered by `ragft report`, and drawn by a real
browser (headless Chromium) without console errors and with non-blank plots."""

import io
import shutil

import pytest
from helpers import BROWSER_FLAGS

from ragft.cli import main


def test_html_report_is_self_contained(tiny_run):
    html = (tiny_run / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert html.index("<h2>Verdict</h2>") < html.index("<h2>Quality with 95% bootstrap")
    assert "<script" not in html and 'src="http' not in html and "<link" not in html
    assert "rag+ft against prompt, example by example" in html
    assert "Paired differences" in html and "What each step up the ladder buys" in html


def test_report_command_rerenders_with_another_pair(tiny_run, capsys):
    assert main(["report", str(tiny_run), "--pair", "prompt", "rag"]) == 0
    assert "| rag+ft |" in capsys.readouterr().out
    assert "rag against prompt, example by example" in (tiny_run / "report.html").read_text()
    assert main(["report", str(tiny_run), "--pair", "prompt", "nope"]) == 2
    assert "pipeline 'nope' is not in this run" in capsys.readouterr().err


def test_report_command_sets_runs_side_by_side(tiny_run, tmp_path, capsys):
    assert main(["report", str(tiny_run), str(tiny_run), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Runs side by side") and out.count("| rag+ft |") == 1
    assert (tmp_path / "compare.md").read_text().startswith("# Runs side by side")


def test_html_report_renders_in_chromium(tiny_run, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (`.ci/run` installs it)")
    from PIL import Image, ImageStat
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((tiny_run / "report.html").as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        shots = [img.screenshot() for img in page.query_selector_all("img")]
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert not problems
    assert len(shots) == 5
    for png in shots:
        image = Image.open(io.BytesIO(png)).convert("L")
        assert image.width > 200 and image.height > 100
        assert ImageStat.Stat(image).stddev[0] > 10  # drawn, not blank


def test_a_run_folder_written_before_the_renames_is_reported_as_it_was(tiny_run, tmp_path):
    """report.json with `variants` (each pipeline's settings under `pipeline`), prediction rows
    naming their `variant`, a config.json with `experiment.variants` and no saved statistics
    inputs: `ragft report` recomputes the same numbers, `ragft serve` loads its pipelines."""
    import json

    from ragft.report.results import Report
    from ragft.runner.folder import run_config, run_pipeline

    old = tmp_path / "run"
    shutil.copytree(tiny_run, old)
    report = json.loads((old / "report.json").read_text())
    report.pop("statistics_inputs")
    report["variants"] = {
        n: {("pipeline" if k == "settings" else k): v for k, v in e.items()} for n, e in report.pop("pipelines").items()
    }
    (old / "report.json").write_text(json.dumps(report))
    for path in (old / "predictions").rglob("*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [{("variant" if k == "pipeline" else k): v for k, v in row.items()} for row in rows]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = json.loads((old / "config.json").read_text())
    config["experiment"]["variants"] = config["experiment"].pop("presets")
    (old / "config.json").write_text(json.dumps(config))

    loaded = Report.load(old)
    assert list(loaded.pipelines) == ["prompt", "rag", "rag+ft"]
    assert loaded.pipelines["rag"].settings["retrieval"] == "dense"
    assert loaded.predictions["rag+ft"][0].pipeline == "rag+ft"
    assert main(["report", str(old)]) == 0
    again = json.loads((old / "report.json").read_text())
    now = json.loads((tiny_run / "report.json").read_text())
    for name in now["pipelines"]:
        assert again["pipelines"][name]["metrics"] == now["pipelines"][name]["metrics"]
    assert again["comparisons"] == now["comparisons"] and again["verdict"] == now["verdict"]
    assert again["pipelines"]["rag"]["settings"] == now["pipelines"]["rag"]["settings"]  # kept through the rerender
    assert run_config(old).experiment.presets == ["prompt", "rag", "rag+ft"]
    assert run_pipeline(old, run_config(old), "rag+ft").trained
