"""What a run ran on: versions, hardware and the project's git sha (environment.json)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

from ragft.io import library_versions


def environment() -> dict[str, Any]:
    """Versions, hardware and the project's git sha, for the run folder."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "versions": library_versions(
            "ragft", "torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "langchain-text-splitters"
        ),
    }
    try:
        import torch

        env["threads"] = torch.get_num_threads()
        env["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        from ragft.generation import pick_dtype

        env["auto_dtype"] = str(pick_dtype("auto")).removeprefix("torch.")  # what models.dtype=auto ran in
    except ImportError:
        pass
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        env["git_sha"] = sha.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_sha"] = None
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
