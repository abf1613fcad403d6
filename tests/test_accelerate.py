"""The LoRA loop under `accelerate launch` with two CPU processes (gloo): each process
trains on half of every batch, DDP averages the gradients, and the result matches one process."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

JOB = ROOT / "tests" / "accelerate_job.py"


def _run(out, processes):
    out.mkdir()
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    cmd = [*launch, str(JOB), str(out)] if processes > 1 else [sys.executable, str(JOB), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def test_two_process_training_matches_one_process(tmp_path):
    (single,) = _run(tmp_path / "one", 1)
    ranks = _run(tmp_path / "two", 2)
    assert [r["processes"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were synchronised
    assert ranks[0]["steps"] == single["steps"] == 16
    assert ranks[0]["tokens"] == ranks[0]["expected_tokens"]  # every record seen once an epoch, across both
    # Every record has the same number of answer tokens, so the mean of the two halves'
    # losses is the whole batch's loss: the curves agree with one process.
    assert ranks[0]["losses"] == pytest.approx(single["losses"], rel=1e-4)
    assert ranks[0]["losses"][-1] < 0.5 * ranks[0]["losses"][0]
