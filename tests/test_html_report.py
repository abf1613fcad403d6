"""The HTML report: self-contained, re-rendered by `ragft report`, and drawn by a real
browser (headless Chromium) without console errors and with non-blank plots."""

import io
import shutil

import pytest

from ragft.cli import main

BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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
