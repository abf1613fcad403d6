"""One `models.device` places every model; `auto` is CUDA when present, else the CPU, and the
cache keys hold the device a run resolved to."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, TINY

from ragft.config import load_config
from ragft.models import resolve_device


def test_auto_resolves_to_the_cpu_without_cuda_and_names_pass_through():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"


def test_an_unknown_device_is_refused_by_name():
    from ragft.errors import ConfigError

    with pytest.raises(ConfigError, match="models.device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        load_config(ROOT / "configs" / "handbook.toml", ['models.device="gpu"'])


@pytest.mark.gpu
def test_generator_embedder_and_run_follow_models_device(tmp_path):
    from ragft.experiment import compare
    from ragft.resources import Resources

    config = load_config(ROOT / "configs" / "handbook.toml", [*TINY, 'experiment.presets=["rag+ft"]'])
    resources = Resources()
    assert next(resources.generator(config.models, config.generation).model.parameters()).device.type == "cuda"
    assert resources.embedder(config.models).model.device.type == "cuda"
    report = compare(config, tmp_path).data
    assert report["environment"]["cuda"]
    cpu = load_config(
        ROOT / "configs" / "handbook.toml", [*TINY, 'experiment.presets=["rag+ft"]', 'models.device="cpu"']
    )
    from ragft.runner.run import plan

    keys = plan(config, tmp_path)["rag+ft"], plan(cpu, tmp_path)["rag+ft"]
    assert keys[0]["adapter"] != keys[1]["adapter"] and keys[0]["predictions"] != keys[1]["predictions"]
    rows = (tmp_path / "predictions" / "rag+ft.jsonl").read_text().splitlines()
    assert len(rows) == 6 and all(json.loads(r)["output"] for r in rows)
