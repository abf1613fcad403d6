"""Pipelines built in Python: the public parts, errors naming the pipeline, and fit/predict
through the same cached runner as `ragft compare`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import HANDBOOK

import ragft
from ragft.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def handbook():
    docs = ragft.load_corpus(HANDBOOK / "docs")
    return docs, ragft.QATask.from_jsonl(HANDBOOK / "qa.jsonl", corpus=docs, test_limit=4, train_limit=8)


@pytest.fixture(scope="module")
def index(handbook, embedder):
    return ragft.Index.build(handbook[0], embedder)


def test_every_public_name_resolves_without_importing_heavy_libraries():
    code = (
        "import sys, ragft\n"
        "names = [getattr(ragft, n) for n in ragft.__all__]\n"
        "heavy = [m for m in ('torch', 'transformers', 'faiss', 'sentence_transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_index_searches_on_its_own(index):
    hits = index.search("Who founded the Tidewatch Cooperative?", k=2)
    assert len(hits) == 2 and hits[0].chunk.doc_id == "founding-history"
    bm25 = index.bm25(k=2).retrieve(["Who founded the Tidewatch Cooperative?"])[0]
    assert bm25[0].chunk.doc_id == "founding-history"
    assert index.hybrid(k=5, weights=(1, 2)).settings.hybrid_weights == [1.0, 2.0]


def test_bad_parts_are_named_in_the_error(generator, index):
    with pytest.raises(ConfigError, match=r"pipeline 'x': unknown prompt template 'qa-contxt'; did you mean 'qa-conte"):
        ragft.Pipeline("x", generator, template="qa-contxt", retriever=index.dense())
    with pytest.raises(ConfigError, match=r"pipeline 'ft': RAFT records come from the pipeline's own retriever"):
        ragft.Pipeline("ft", generator, finetune=ragft.LoRA(records=ragft.RAFT()))
    with pytest.raises(ConfigError, match=r"'p': template 'qa-context' shows \{context\}, but the pipeline has"):
        ragft.Pipeline("p", generator, template="qa-context")
    with pytest.raises(ConfigError, match=r"unknown key 'finetune.rnak'; did you mean 'finetune.rank'"):
        ragft.LoRA(rnak=8)
    with pytest.raises(ConfigError, match=r"finetune.method: unknown value 'lora2'; did you mean 'lora'"):
        ragft.FineTune("lora2")
    with pytest.raises(InputError, match=r"Index.dense: unknown setting 'hide'; did you mean 'hyde'"):
        index.dense(hide=True)
    with pytest.raises(InputError, match=r"template 'bad': the user text needs a \{question\}"):
        ragft.PromptTemplate("bad", "", "Context: {context}").checked()


def test_a_full_fine_tune_gives_the_generator_its_base_weights_back(tmp_path, handbook, index, tiny_model, tokenizer):
    import torch

    from ragft.generation import Generator

    tiny = Generator(tiny_model, tokenizer, "tiny", batch_size=4, max_new_tokens=4)
    full = ragft.Pipeline(
        "rag+full",
        tiny,
        template="qa-context",
        retriever=index.dense(k=2),
        finetune=ragft.FineTune("full", max_steps=1, batch_size=4, learning_rate=0.01),
    )
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = tiny.model(input_ids=ids).logits.clone()
    full.fit(handbook[1], tmp_path)  # trains, then takes the weights off
    full.predict(handbook[1], tmp_path)  # loads them again, then takes them off
    with torch.no_grad():
        assert torch.equal(tiny.model(input_ids=ids).logits, before)


def test_two_pipelines_with_one_name_are_refused(handbook, generator):
    with pytest.raises(ConfigError, match="two pipelines are named 'same'"):
        ragft.Experiment(handbook[1], [ragft.Pipeline("same", generator), ragft.Pipeline("same", generator)])
    with pytest.raises(ConfigError, match="experiment.pairs: no pipeline named 'rag'"):
        ragft.Experiment(handbook[1], [ragft.Pipeline("prompt", generator)], pairs=[("prompt", "rag")])


def test_fit_then_predict_reuses_the_adapter_and_leaves_the_generator_as_it_was(
    tmp_path, handbook, index, generator, monkeypatch
):
    import torch

    task = handbook[1]
    tuned = ragft.Pipeline(
        "rag+ft",
        generator,
        template="qa-context",
        retriever=index.dense(k=2),
        finetune=ragft.LoRA(rank=4, max_steps=2, batch_size=4, records=ragft.RAFT(distractors=1)),
    )
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = generator.model(input_ids=ids).logits.clone()
    tuned.fit(task, tmp_path)
    manifest = tmp_path / "adapters" / "rag_ft" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("loaded or embedded again")

    monkeypatch.setattr(ragft.Embedder, "__init__", refuse)  # the index passed in is used as it is
    predictions = tuned.predict(task, tmp_path)
    assert manifest.stat().st_mtime_ns == stamp  # the adapter fit trained was reused
    assert [p.example_id for p in predictions] == [e.id for e in task.test]
    assert all(len(p.retrieved) == 2 and set(p.scores) == {"f1", "em", "acc"} for p in predictions)
    assert tuned.predict(task, tmp_path) == predictions  # read back
    with torch.no_grad():
        assert torch.equal(generator.model(input_ids=ids).logits, before)
    assert not any("lora_" in n for n, _ in generator.model.named_parameters())


def test_a_pipeline_runs_with_its_generators_decoding_settings(generator):
    from ragft.config import Config

    custom = generator.with_decoding(batch_size=3, max_new_tokens=7, seed=0)
    settings = ragft.Pipeline("p", custom).resolve(Config())
    assert (settings.generation.batch_size, settings.generation.max_new_tokens) == (3, 7)
    assert settings.models.generator == "smollm2-135m-instruct" and settings.models.dtype == "float32"
