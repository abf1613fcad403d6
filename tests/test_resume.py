"""A comparison killed with SIGKILL during training and again during prediction finishes
on re-run with the same predictions as an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import RESUME, ROOT


def _start(run: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "ragft.cli",
        "compare",
        str(ROOT / "configs" / "handbook.toml"),
        *RESUME,
        "--out",
        str(run),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "never reached the point to kill at"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def _outputs(run: Path) -> dict[str, dict[str, str]]:
    out = {}
    for name in ("rag+ft",):
        rows = [json.loads(line) for line in (run / "predictions" / f"{name}.jsonl").read_text().splitlines()]
        out[name] = {r["example_id"]: r["output"] for r in rows}
    return out


def test_sigkill_during_training_and_prediction_then_rerun_matches(tmp_path):
    straight = _start(tmp_path / "straight")
    assert straight.wait() == 0, straight.stderr.read()[-2000:]

    run = tmp_path / "killed"
    checkpoint = run / "adapters" / "rag_ft.checkpoint" / "progress.json"
    _kill_when(_start(run), checkpoint.is_file)
    assert not (run / "adapters" / "rag_ft" / "manifest.json").exists()

    preds = run / "predictions" / "rag+ft.jsonl"
    _kill_when(_start(run), lambda: preds.is_file() and preds.stat().st_size > 0)
    assert (run / "adapters" / "rag_ft" / "manifest.json").is_file()

    final = _start(run)
    assert final.wait() == 0, final.stderr.read()[-2000:]
    assert _outputs(run) == _outputs(tmp_path / "straight")
    losses = [
        json.loads((r / "adapters" / "rag_ft" / "manifest.json").read_text())["losses"]
        for r in (run, tmp_path / "straight")
    ]
    assert losses[0] == losses[1]
