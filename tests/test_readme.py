"""The README's commands are the ones the Makefile and CI run."""

import re
import subprocess

from conftest import ROOT


def test_readme_commands_exist_and_ci_calls_the_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*$", readme, flags=re.M)
    assert "make demo" in commands and "make test" in commands
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    for command in {"make demo", "make test"}:
        dry = subprocess.run([*command.split(), "-n"], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
