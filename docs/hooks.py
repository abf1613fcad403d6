"""MkDocs hook: the config reference page is written at build time from what
`ragft compare --help-config` prints, so it cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MARKER = "<!-- config-keys -->"


def help_config(root: Path) -> str:
    """The command's output, from this checkout's `ragft` (run from the repository root)."""
    done = subprocess.run(
        [sys.executable, "-m", "ragft.cli", "compare", "--help-config"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ragft compare --help-config failed:\n{done.stderr[-2000:]}")
    return done.stdout


def parse(text: str) -> list[tuple[str, str, str]]:
    """(key, default, help) rows from lines `key = default` each followed by indented help."""
    rows: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        if line.startswith("    ") and rows:
            key, default, doc = rows[-1]
            rows[-1] = (key, default, (doc + " " + line.strip()).strip())
        elif " = " in line:
            key, default = line.split(" = ", 1)
            rows.append((key.strip(), default.strip(), ""))
        elif line.strip():
            raise ValueError(f"unexpected line in --help-config output: {line!r}")
    if not rows:
        raise ValueError("ragft compare --help-config printed no keys")
    return rows


def _cell(text: str) -> str:
    """Table-safe Markdown: pipes escaped, and `<` outside code spans kept as text."""
    pieces = text.replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("&", "&amp;").replace("<", "&lt;") for i, p in enumerate(pieces))


def render(rows: list[tuple[str, str, str]]) -> str:
    """One table per config section, in the order the command lists them."""
    out: list[str] = []
    section = None
    for key, default, doc in rows:
        head = key.split(".", 1)[0]
        if head != section:
            section = head
            out += ["", f"## `[{head}]`", "", "| key | default | what it sets |", "|---|---|---|"]
        out.append(f"| `{key}` | `{_cell(default)}` | {_cell(doc)} |")
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs hook signature)
    if MARKER not in markdown:
        return markdown
    root = Path(config["config_file_path"]).resolve().parent
    return markdown.replace(MARKER, render(parse(help_config(root))))
