"""Shared fixtures: the real offline models (loaded once per session) and a tiny random
Llama for training mechanics."""

from __future__ import annotations

import os

import pytest
from helpers import ROOT, TINY, data_dir, tiny_llama

os.environ.setdefault("RAGFT_CACHE", str(ROOT / ".ragft-cache"))
os.environ.setdefault("RAGFT_PROGRESS", "0")


try:  # property-based tests: a few hundred repeatable cases, or 2,000 fresh ones under `make test-all`
    from hypothesis import HealthCheck, settings

    _quiet = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
    settings.register_profile(
        "default", max_examples=200, deadline=None, derandomize=True, suppress_health_check=_quiet
    )
    settings.register_profile("thorough", max_examples=2000, deadline=None, database=None, suppress_health_check=_quiet)
    settings.load_profile(os.environ.get("RAGFT_HYPOTHESIS", "default"))
except ImportError:  # installed with the dev extra
    pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
        if "data" in item.keywords and data_dir() is None:
            item.add_marker(pytest.mark.skip(reason="needs ../shared/data or RAGFT_DATA"))


@pytest.fixture(scope="session")
def embedder():
    from ragft.retrieval import Embedder

    return Embedder("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def generator():
    """The real 135M generator in fp32 (exact, so batched and single runs agree)."""
    from ragft.generation import Generator

    return Generator.load("smollm2-135m-instruct", "float32", batch_size=4, max_new_tokens=16)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, generator, embedder):
    """A finished handbook run (prompt, rag, rag+ft) on a few examples, two training steps."""
    from ragft.config import load_config
    from ragft.experiment import compare

    run = tmp_path_factory.mktemp("tiny") / "run"
    config = load_config(ROOT / "configs" / "handbook.toml", [*TINY, "experiment.context_views=true"])  # all plots
    compare(config, run, generator=generator, embedder=embedder)
    return run


@pytest.fixture(scope="session")
def tokenizer(generator):
    return generator.tokenizer


@pytest.fixture
def tiny_model(tokenizer):
    """A tiny random Llama with the real tokenizer's vocabulary."""
    return tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)


@pytest.fixture
def served(tiny_run, generator, embedder):
    """rag+ft served with the session's generator: its adapter is on until the test ends."""
    from ragft.serve.served import ServedPipeline

    pipeline = ServedPipeline.load(tiny_run, "rag+ft", generator=generator, embedder=embedder)
    yield pipeline
    pipeline.close()
