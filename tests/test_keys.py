"""Cache keys: every config key, changed on its own, rebuilds exactly the artifacts that read it.

`ragft.runner.run.plan` gives every pipeline's stage keys (index, hits, adapter, predictions)
without loading a model; the runner names and checks its artifacts by the same keys, so a
changed key is a rebuilt artifact and an unchanged one is reused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from helpers import HANDBOOK, ROOT

from ragft.config import SynthConfig, describe, load_config
from ragft.generation import pick_dtype
from ragft.runner.run import plan

LADDER = ["prompt", "fewshot", "rag", "dspy", "rag+dspy", "ft", "rag+ft"]
QA_BASE = [f"experiment.presets={json.dumps(LADDER)}", "chunking.chunk_size=200"]
QA_BASE += ["chunking.chunk_overlap=20"]  # small enough to count in tokens too


SYNTH = [f.name for f in dataclasses.fields(SynthConfig) if f.name != "checker"]  # checker: STRUCTURAL


def arts(stages: str, pipelines: list[str]) -> set[str]:
    """`stage:pipeline` names, e.g. arts("hits predictions", ["rag"])."""
    return {f"{s}:{p}" for s in stages.split() for p in pipelines}


EVERY = arts("predictions", LADDER)
TRAINED = arts("adapter predictions", ["ft", "rag+ft"])
RAFT = arts("adapter predictions", ["rag+ft"])
OPTIMIZED = arts("prompt predictions", ["dspy", "rag+dspy"])  # prompts optimized on the train split
HITS = arts("hits predictions", ["rag", "rag+dspy", "rag+ft"]) | {"adapter:rag+ft", "prompt:rag+dspy"}
INDEX = HITS | arts("index", ["rag", "rag+dspy", "rag+ft"])
GENERATOR = EVERY | arts("adapter", ["ft", "rag+ft"]) | arts("prompt", ["dspy", "rag+dspy"])
QUERY_SIDE = HITS  # HyDE, rewrites and generator reranking change what comes back, not the index

# What each config key reaches on the QA ladder over the handbook.
QA_EXPECTED: dict[str, set[str]] = {
    "experiment.name": set(),
    "experiment.output_dir": set(),
    "experiment.seed": TRAINED | OPTIMIZED,
    "experiment.seeds": set(),  # more runs beside the main ones
    "experiment.bootstrap_samples": set(),
    "experiment.general_examples": set(),
    "experiment.context_views": set(),
    "experiment.pairs": set(),  # which paired tests the report shows
    "models.generator": GENERATOR,
    "models.embedder": INDEX,
    "models.dtype": GENERATOR,  # changed to the dtype `auto` does not resolve to
    "models.embedder_dtype": INDEX,
    "models.device": GENERATOR,
    "models.endpoint_key_env": set(),  # read only where models.endpoint is set: run-only
    "models.endpoint_timeout_s": set(),
    "models.endpoint_retries": set(),
    "data.corpus": INDEX,  # a copy with one document edited
    "data.text_field": set(),  # JSONL corpora only; the handbook is a folder
    "data.id_field": set(),
    "data.skip_bad": set(),  # nothing unreadable to skip
    "data.examples": TRAINED | OPTIMIZED,  # a copy with the last training answer edited
    "data.test_limit": EVERY
    | {"adapter:rag+ft", "prompt:rag+dspy"},  # fewer test documents kept out of training prompts
    "data.train_limit": TRAINED | OPTIMIZED,  # the first (fewshot) examples stay
    "chunking.unit": INDEX,
    "chunking.chunk_size": INDEX,
    "chunking.chunk_overlap": INDEX,
    "retrieval.k": arts("hits predictions", ["rag", "rag+dspy", "rag+ft"]) | {"prompt:rag+dspy"},  # RAFT draws its own
    "retrieval.method": QUERY_SIDE,
    "retrieval.hybrid_weights": set(),  # dense only
    "retrieval.hyde": QUERY_SIDE,
    "retrieval.multi_query": QUERY_SIDE,
    "retrieval.rerank": QUERY_SIDE,
    "retrieval.rerank_depth": set(),  # no reranker
    "retrieval.index": INDEX,
    "retrieval.hnsw_m": set(),  # the small index is exact (flat)
    "retrieval.ef_construction": set(),
    "retrieval.ef_search": set(),
    "retrieval.nprobe": set(),
    "generation.max_new_tokens": EVERY | OPTIMIZED,
    "generation.batch_size": EVERY | OPTIMIZED,
    "finetune.method": TRAINED,
    "finetune.rank": TRAINED,
    "finetune.alpha": TRAINED,
    "finetune.dropout": TRAINED,
    "finetune.target_modules": TRAINED,
    "finetune.learning_rate": TRAINED,
    "finetune.epochs": TRAINED,
    "finetune.max_steps": TRAINED,
    "finetune.batch_size": TRAINED,
    "finetune.checkpoint_every": set(),  # run-only
    "finetune.validation_fraction": TRAINED,
    "finetune.eval_every": TRAINED,
    "finetune.patience": TRAINED,
    "finetune.max_length": TRAINED,
    "finetune.gradient_checkpointing": set(),  # run-only: same weights
    "finetune.virtual_tokens": set(),  # prompt tuning only
    "finetune.quote": RAFT,
    "finetune.distractors": RAFT,
    "finetune.p_no_gold": RAFT,
    "finetune.records": RAFT,  # rag+ft to plain SFT on its top k; ft is plain SFT already
    "finetune.train_data": TRAINED,  # pairs the generator writes instead of the train split
    "finetune.beta": set(),  # read only by the dpo and kto objectives
    **{f"synth.{name}": set() for name in SYNTH},  # read only where finetune.train_data = "synth"
    "optimize.demos": OPTIMIZED,
    "optimize.candidates": OPTIMIZED,
    "optimize.train_questions": OPTIMIZED,
    "optimize.validation_questions": OPTIMIZED,
    "optimize.threshold": OPTIMIZED,
    "sql.database": set(),
    "sql.sample_rows": set(),
    "sql.timeout_s": set(),
    "sql.max_rows": set(),
    "tracking.mlflow_uri": set(),
    "tracking.mlflow_experiment": set(),
    "prices.cpu_hour": set(),  # prices the report's costs, rebuilds nothing
    "prices.gpu_hour": set(),
    "prices.million_input_tokens": set(),
    "prices.million_output_tokens": set(),
}

SQL_LADDER = ["prompt", "fewshot", "rag", "ft", "rag+ft"]
SQL_EVERY = {f"predictions:{p}" for p in SQL_LADDER}
SQL_EXPECTED: dict[str, set[str]] = {
    "sql.database": SQL_EVERY | arts("adapter", ["ft", "rag+ft"]) | arts("hits", ["rag", "rag+ft"]),
    "sql.sample_rows": SQL_EVERY | arts("adapter", ["ft", "rag+ft"]) | arts("hits", ["rag", "rag+ft"]),
    "sql.timeout_s": SQL_EVERY,  # decides scores, not outputs
    "sql.max_rows": SQL_EVERY,
    "retrieval.k": arts("hits predictions", ["rag", "rag+ft"]) | {"adapter:rag+ft", "predictions:rag+ft"},
    "models.embedder": arts("hits predictions", ["rag", "rag+ft"]) | {"adapter:rag+ft"},
}

STRUCTURAL = {
    "experiment.presets": "which pipelines run; test_removing_a_pipeline_keeps_the_others",
    "data.kind": "which task runs; the SQL walk below covers the SQL task's keys",
    "models.endpoint": "which generator answers (trained pipelines refuse one); test_endpoint_pipeline_keys",
    "finetune.init_from": "names another pipeline; test_feedback's feedback pipelines check its keys",
    "synth.checker": "names another pipeline; test_synth's test_a_checked_synthesis_is_keyed_by_its_checkers_adapter",
    "finetune.objective": "dpo and kto need feedback; test_feedback's feedback pipelines check its keys",
}


def changed(key: str, default, tmp_path) -> object:
    """Another valid value for a config key."""
    special = {
        "experiment.general_examples": str(ROOT / "corpora" / "general" / "qa.jsonl"),
        "experiment.seeds": [0, 1],
        "experiment.pairs": ["rag:rag+ft"],
        "models.generator": "example-org/another-generator",
        "models.embedder": "example-org/another-embedder",
        "models.dtype": "float32" if str(pick_dtype("auto")) == "torch.bfloat16" else "bfloat16",
        "models.embedder_dtype": "bfloat16",
        "models.device": "cuda:1",
        "data.corpus": str(_edited_corpus(tmp_path)),
        "data.examples": str(_edited_examples(tmp_path)),
        "data.test_limit": 5,
        "data.train_limit": 50,
        "chunking.unit": "tokens",
        "chunking.chunk_overlap": 120,  # one more character of overlap leaves these chunks alike
        "retrieval.method": "hybrid",
        "retrieval.rerank": "generator",
        "retrieval.index": "hnsw",
        "retrieval.hybrid_weights": [1.0, 2.0],
        "finetune.method": "ia3",
        "finetune.records": "sft",
        "finetune.target_modules": ["q_proj"],
        "finetune.train_data": "synth",
        "synth.method": "passage",
        "synth.roundtrip": False,  # unset is on for the default method
        "sql.database": str(_edited_database(tmp_path)),
        "tracking.mlflow_uri": "sqlite:///elsewhere.db",
    }
    if key in special:
        return special[key]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2 if default else 0.1
    if isinstance(default, str):
        return default + "-other"
    raise AssertionError(f"no other value for {key} = {default!r}")


def _edited_corpus(tmp_path):
    folder = tmp_path / "docs"
    if not folder.exists():
        shutil.copytree(HANDBOOK / "docs", folder)
        first = sorted(folder.iterdir())[0]
        first.write_text(first.read_text() + "\n\nAn added closing sentence.\n")
    return folder


def _edited_examples(tmp_path):
    path = tmp_path / "qa.jsonl"
    if not path.exists():
        rows = [json.loads(line) for line in (HANDBOOK / "qa.jsonl").read_text().splitlines()]
        last_train = max(i for i, r in enumerate(rows) if r["split"] == "train")
        rows[last_train]["answers"] = ["an edited answer"]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _edited_database(tmp_path):
    import sqlite3

    path = tmp_path / "tidewatch.sqlite"
    if not path.exists():
        shutil.copy(ROOT / "corpora" / "tidewatch-sql" / "tidewatch.sqlite", path)
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE added_note (id INTEGER PRIMARY KEY, note TEXT)")
    return path


def _rebuilt(before: dict, after: dict) -> set[str]:
    return {
        f"{stage}:{name}"
        for name, keys in before.items()
        for stage, value in keys.items()
        if after[name][stage] != value
    }


def _walk(config_file, base, expected, keys, tmp_path) -> dict[str, tuple[set[str], set[str]]]:
    """For every key: (rebuilt, expected) where they differ."""
    baseline = plan(load_config(config_file, base), tmp_path / "run")
    wrong = {}
    defaults = {k: v for k, v, _ in describe()}
    for key in keys:
        config = load_config(config_file, base)
        section, name = key.split(".")
        default = getattr(getattr(config, section), name)
        assert key in defaults
        value = changed(key, default, tmp_path)
        rebuilt = _rebuilt(baseline, plan(load_config(config_file, [*base, f"{key}={json.dumps(value)}"]), tmp_path))
        if rebuilt != expected[key]:
            wrong[key] = (sorted(rebuilt), sorted(expected[key]))
    return wrong


def test_every_config_key_rebuilds_exactly_what_reads_it(tmp_path):
    keys = [k for k, _, _ in describe()]
    assert set(keys) == set(QA_EXPECTED) | set(STRUCTURAL), "a config key has no expectation here"
    wrong = _walk(ROOT / "configs" / "handbook.toml", QA_BASE, QA_EXPECTED, list(QA_EXPECTED), tmp_path)
    assert not wrong, json.dumps(wrong, indent=1)


def test_synth_keys_rebuild_the_adapters_trained_on_synthetic_pairs(tmp_path):
    base = [*QA_BASE, "finetune.train_data=synth", "synth.method=answer_first"]  # reads every synth key
    expected = {f"synth.{name}": TRAINED for name in SYNTH}
    expected["data.examples"] = OPTIMIZED  # test questions only: the synthetic pairs are the training data
    expected["data.corpus"] = INDEX | TRAINED  # every adapter trains on pairs written from the documents
    wrong = _walk(ROOT / "configs" / "handbook.toml", base, expected, list(expected), tmp_path)
    assert not wrong, json.dumps(wrong, indent=1)


def test_an_edited_training_file_retrains_the_adapters_on_it(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [json.loads(line) for line in (HANDBOOK / "qa.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in train))
    base = [*QA_BASE, f"finetune.train_data={pairs}"]
    before = plan(load_config(ROOT / "configs" / "handbook.toml", base), tmp_path / "run")
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_text(pairs.read_text())
    same = plan(load_config(ROOT / "configs" / "handbook.toml", [*QA_BASE, f"finetune.train_data={moved}"]), tmp_path)
    assert _rebuilt(before, same) == set()  # the pairs' content is the key, not the file's name
    train[-1]["answers"] = ["an edited answer"]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in train))
    after = plan(load_config(ROOT / "configs" / "handbook.toml", base), tmp_path / "run")
    assert _rebuilt(before, after) == TRAINED


def test_sql_keys_rebuild_exactly_what_reads_them(tmp_path):
    wrong = _walk(ROOT / "configs" / "tidewatch-sql.toml", [], SQL_EXPECTED, list(SQL_EXPECTED), tmp_path)
    assert not wrong, json.dumps(wrong, indent=1)


def test_removing_a_pipeline_keeps_the_others(tmp_path):
    config_file = ROOT / "configs" / "handbook.toml"
    full = plan(load_config(config_file, QA_BASE), tmp_path)
    fewer = plan(load_config(config_file, [*QA_BASE, 'experiment.presets=["rag","rag+ft"]']), tmp_path)
    assert fewer == {name: full[name] for name in ("rag", "rag+ft")}


def test_endpoint_pipeline_keys(tmp_path):
    """An untrained ladder behind an endpoint: keyed by the URL and model name, not by weights
    here; its settings that only shape the requests rebuild nothing."""
    config_file = ROOT / "configs" / "handbook.toml"
    base = [*QA_BASE, 'experiment.presets=["prompt","fewshot","rag","dspy","rag+dspy"]']
    endpoint = [*base, 'models.endpoint="http://127.0.0.1:9/v1"']
    local, remote = plan(load_config(config_file, base), tmp_path), plan(load_config(config_file, endpoint), tmp_path)
    generated = {f"predictions:{p}" for p in local} | {"prompt:dspy", "prompt:rag+dspy"}
    assert _rebuilt(local, remote) == generated  # the index and retrieved passages are the same
    other = plan(load_config(config_file, [*endpoint, 'models.endpoint="http://10.0.0.2:8000/v1"']), tmp_path)
    assert _rebuilt(remote, other) == generated
    run_only = ["models.endpoint_timeout_s=5", "models.endpoint_retries=0", 'models.endpoint_key_env="K"']
    assert plan(load_config(config_file, [*endpoint, *run_only]), tmp_path) == remote


def test_dtype_auto_is_keyed_by_the_dtype_it_resolves_to(tmp_path):
    config_file = ROOT / "configs" / "handbook.toml"
    resolved = str(pick_dtype("auto")).removeprefix("torch.")
    auto = plan(load_config(config_file, QA_BASE), tmp_path)
    named = plan(load_config(config_file, [*QA_BASE, f"models.dtype={json.dumps(resolved)}"]), tmp_path)
    assert auto == named  # the same weights in the same dtype: nothing to rebuild


def test_device_auto_is_keyed_by_the_device_it_resolves_to(tmp_path):
    import torch

    config_file = ROOT / "configs" / "handbook.toml"
    resolved = "cuda" if torch.cuda.is_available() else "cpu"
    auto = plan(load_config(config_file, QA_BASE), tmp_path)
    assert auto == plan(load_config(config_file, [*QA_BASE, f"models.device={json.dumps(resolved)}"]), tmp_path)


@pytest.mark.parametrize("pipeline", ["ft", "rag+ft"])
def test_every_adapter_and_prediction_key_differs_between_pipelines(tmp_path, pipeline):
    keys = plan(load_config(ROOT / "configs" / "handbook.toml", QA_BASE), tmp_path)
    assert len({k["predictions"] for k in keys.values()}) == len(keys)
    assert keys[pipeline]["adapter"] not in {k["adapter"] for n, k in keys.items() if n != pipeline}


KEPT = json.loads((ROOT / "tests" / "data" / "stage_keys.json").read_text())
"""Every stage key of the bundled configs as ragft computed them before the layers, the
settings records and the one-word renames (commit aa9bd7e, models.dtype=float32 on the
CPU): run folders made then are reused whole."""


@pytest.mark.parametrize(
    "name",
    [
        "handbook",
        "handbook-synth",
        "tidewatch-sql",
        pytest.param("squad", marks=pytest.mark.data),
        pytest.param("squad-synth", marks=pytest.mark.data),
        pytest.param("spider", marks=pytest.mark.data),
    ],
)
def test_stage_keys_are_those_earlier_run_folders_were_made_with(name, tmp_path):
    config = load_config(ROOT / "configs" / f"{name}.toml", ["models.dtype=float32", "models.device=cpu"])
    assert plan(config, tmp_path) == KEPT[name]
