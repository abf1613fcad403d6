"""The LoRA loop under `accelerate launch` with two CPU processes (gloo): each process
trains on half of every batch, DDP averages the gradients, and the result matches one process."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT

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


@pytest.mark.slow  # two processes each load the 135M generator and the embedder: minutes on 2 cores
def test_finetune_command_under_two_processes_leaves_an_adapter_compare_reuses(tmp_path, generator, embedder):
    from helpers import TINY

    from ragft.config import load_config
    from ragft.experiment import compare

    config = ROOT / "configs" / "handbook.toml"
    settings = [*TINY, 'experiment.presets=["rag+ft"]', "experiment.context_views=false"]
    settings.append('models.dtype="float32"')  # the fixture generator's: its key is the adapter's
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    cmd = [
        *launch,
        "-m",
        "ragft.cli",
        "finetune",
        str(config),
        *settings,
        "--pipeline",
        "rag+ft",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("rag+ft: 2 steps") == 1  # printed by the main process only
    manifest = tmp_path / "adapters" / "rag_ft" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    report = compare(load_config(config, settings), tmp_path, generator=generator, embedder=embedder).data
    assert manifest.stat().st_mtime_ns == stamp  # the adapter was reused, not trained again
    assert report["pipelines"]["rag+ft"]["costs"]["training"]["steps"] == 2


@pytest.mark.parametrize("kind", ["FSDP", "DEEPSPEED"])
def test_sharded_launch_is_refused_by_name(kind, monkeypatch, tiny_model, tokenizer):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from ragft.config import FinetuneConfig
    from ragft.errors import RagftError
    from ragft.finetune.data import make_record
    from ragft.finetune.lora import train_lora

    # On CPUs accelerate falls back to DDP whatever the launch flags; on GPUs these are what it reports.
    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: DistributedType[kind]))
    records = [make_record("a", [5, 6, 7], [8], tokenizer.eos_token_id, 64)]
    with pytest.raises(RagftError, match=f"asked for {kind}.*--multi_gpu"):
        train_lora(tiny_model, records, FinetuneConfig(rank=4), tokenizer.pad_token_id)
