"""First run against an unchanged re-run of the same comparison, side by side.

Each run is a fresh `ragft compare` process, as a user would start it; the re-run should
find every artifact cached and recompute nothing.
Run: .venv/bin/python benchmarks/rerun.py [key.sub=value ...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "ragft.cli",
            "compare",
            str(ROOT / "configs" / "handbook.toml"),
            *sys.argv[1:],
            "--out",
            tmp,
        ]
        first = timed(cmd)
        again = timed(cmd)
    print(f"first run {first:.1f} s, unchanged re-run {again:.1f} s: re-run is {first / again:.0f}x faster")


if __name__ == "__main__":
    main()
