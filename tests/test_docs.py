"""The manual stays true to the code: its Python examples run, its TOML examples load as
configs, it builds with `mkdocs build --strict`, and the README stays a short front page.

A comment right before a fenced block says how to treat it:
`<!-- slow -->` (a Python example that takes minutes: run under `-m slow`),
`<!-- fragment -->` (not run; keep these few), `<!-- appended to configs/X.toml -->` (TOML
loaded after that config's text) and `<!-- file configs/X.toml -->` (TOML that must equal
that file). Any other comment there is an error, so a typo cannot skip a block.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(
    r"(?:^<!--(?P<mark>[^\n]*?)-->\n)?^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", flags=re.M | re.S
)
MARKS = re.compile(r"^(slow|fragment|appended to (?P<base>\S+)|file (?P<file>\S+))$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    mark: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks that start at the margin, with the comment just before each."""
    text = page.read_text(encoding="utf-8")
    return [
        Block(page, text.count("\n", 0, m.start("code")), m["lang"], m["code"], (m["mark"] or "").strip())
        for m in FENCE.finditer(text)
    ]


ALL = [b for page in [*PAGES, ROOT / "README.md"] for b in blocks(page)]
PYTHON = [b for b in ALL if b.lang == "python" and b.mark != "fragment" and b.page.parent != ROOT]
TOML = [b for b in ALL if b.lang == "toml" and b.mark != "fragment"]


def test_pages_found_and_every_mark_known():
    assert len(PAGES) >= 20 and PYTHON and TOML
    bad = [f"{b.name}: <!-- {b.mark} -->" for b in ALL if b.mark and not MARKS.match(b.mark)]
    assert not bad, f"unknown marks before code blocks: {bad}"
    fragments = [b.name for b in ALL if b.mark == "fragment"]
    assert len(fragments) <= 3, f"keep fragments few, or make them run: {fragments}"


def test_no_indented_example_escapes_the_checks():
    """A Python or TOML block inside a list item would be skipped by `blocks`: keep them at the margin."""
    indented = [
        f"{page.relative_to(ROOT)}:{n}"
        for page in [*PAGES, ROOT / "README.md"]
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"^\s+```(python|toml|json)", line)
    ]
    assert not indented


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.name, marks=[pytest.mark.slow] if b.mark == "slow" else []) for b in PYTHON],
)
def test_python_example_runs(block: Block):
    """Each example is a whole program, run from the repository root as a reader would."""
    timeout = 1800 if block.mark == "slow" else 180
    done = subprocess.run([sys.executable, "-c", block.code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{block.name}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("block", [pytest.param(b, id=b.name) for b in TOML])
def test_toml_example_loads(block: Block, tmp_path: Path):
    """Loads with `ragft.load_config` and resolves to pipelines (bases, names, `init_from`)."""
    import ragft
    from ragft.settings import resolve_pipelines

    base = MARKS.match(block.mark) if block.mark else None
    text = block.code
    if base and base["file"]:
        assert block.code == (ROOT / base["file"]).read_text(encoding="utf-8"), f"{block.name} differs from the file"
    if base and base["base"]:
        text = (ROOT / base["base"]).read_text(encoding="utf-8") + "\n" + block.code
    # Beside a link to the bundled corpora, so paths written as in configs/ resolve as there.
    (tmp_path / "corpora").symlink_to(ROOT / "corpora")
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "example.toml"
    path.write_text(text, encoding="utf-8")
    config = ragft.load_config(path)
    names = [pipeline.name for pipeline in resolve_pipelines(config)]
    assert names and all(p.name in names for p in config.pipelines)


def test_json_examples_parse():
    for block in (b for b in ALL if b.lang == "json"):
        for line in block.code.splitlines():
            assert isinstance(json.loads(line), dict), block.name


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra (mkdocs)")
def test_manual_builds_strict_with_api_and_config_reference(tmp_path: Path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("Pipeline", "Experiment", "Report", "Index", "Generator", "QATask"):
        assert f'id="ragft.{name}"' in api, name
    keys = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    assert "experiment.presets" in keys and "finetune.checkpoint_every" in keys


def test_readme_is_a_short_front_page_whose_figures_the_manual_holds():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    manual = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    missing = sorted(set(re.findall(r"\d+\.\d+", readme)) - set(re.findall(r"\d+\.\d+", manual)))
    assert not missing, f"figures in the README that no page of docs/ holds: {missing}"
    for link in re.findall(r"\]\((docs/[^)#]*)", readme):
        assert (ROOT / link).exists(), link


def test_readme_quickstart_is_the_manuals():
    """One quickstart: the README's Python block (run by test_readme) is the guide's slow example."""
    (quickstart,) = [b.code for b in ALL if b.lang == "python" and b.page == ROOT / "README.md"]
    assert quickstart in [b.code for b in PYTHON if b.mark == "slow"]
