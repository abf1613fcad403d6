"""The README's commands are the ones the Makefile and CI run."""

import re
import subprocess
import sys

import pytest
from helpers import ROOT


def test_readme_commands_exist_and_ci_calls_the_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*$", readme, flags=re.M)
    assert "make demo" in commands and "make test" in commands
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    for command in {"make demo", "make test"}:
        dry = subprocess.run([*command.split(), "-n"], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_python_example_runs():
    (block,) = _python_blocks((ROOT / "README.md").read_text())
    done = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rag+ft" in done.stdout and "F1" in done.stdout


@pytest.mark.slow
def test_make_demo_runs():
    done = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| rag+ft |" in done.stdout
