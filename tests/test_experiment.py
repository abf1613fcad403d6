"""Runner behaviour beyond the CLI: several training seeds, and re-running one changed variant."""

import json

import pytest
from conftest import ROOT
from test_cli import TINY

from ragft.config import load_config
from ragft.experiment import compare
from ragft.report import markdown


def test_several_seeds_train_each_and_report_the_spread(tmp_path, generator, embedder):
    config = load_config(
        ROOT / "configs" / "handbook.toml", [*TINY, 'experiment.variants=["rag","rag+ft"]', "experiment.seeds=[0, 1]"]
    )
    report = compare(config, tmp_path, generator=generator, embedder=embedder)
    spread = report["seed_spread"]["rag+ft"]
    assert spread["seeds"] == [0, 1] and len(spread["f1"]["per_seed"]) == 2
    assert spread["f1"]["min"] <= spread["f1"]["mean"] <= spread["f1"]["max"]
    assert spread["f1"]["per_seed"][0] == report["variants"]["rag+ft"]["metrics"]["f1"]["mean"]
    losses = [
        json.loads((tmp_path / "adapters" / name / "manifest.json").read_text())["losses"]
        for name in ("rag_ft", "rag_ft_seed1")
    ]
    assert losses[0] != losses[1]  # really another seed
    assert "Fine-tuned arms across training seeds" in markdown(report)
    assert "rag" not in report["seed_spread"]  # untrained arms are deterministic


def test_changing_one_variant_setting_reruns_only_that_variant(tmp_path, generator, embedder):
    settings = [*TINY, 'experiment.variants=["prompt","rag+ft"]']
    compare(load_config(ROOT / "configs" / "handbook.toml", settings), tmp_path, generator=generator, embedder=embedder)
    prompt_file, adapter = tmp_path / "predictions" / "prompt.jsonl", tmp_path / "adapters" / "rag_ft" / "manifest.json"
    stamps = prompt_file.stat().st_mtime_ns, adapter.stat().st_mtime_ns
    compare(
        load_config(ROOT / "configs" / "handbook.toml", [*settings, "finetune.rank=4"]),
        tmp_path,
        generator=generator,
        embedder=embedder,
    )
    assert prompt_file.stat().st_mtime_ns == stamps[0]  # untouched
    assert adapter.stat().st_mtime_ns != stamps[1]  # retrained
    assert (tmp_path / "predictions" / "rag+ft.stale.jsonl").is_file()


def test_retrieval_settings_reach_the_rag_arm_and_rerun_only_it(tmp_path, generator, embedder):
    settings = [*TINY, 'experiment.variants=["prompt","rag"]']
    first = compare(
        load_config(ROOT / "configs" / "handbook.toml", settings), tmp_path, generator=generator, embedder=embedder
    )
    prompt_file = tmp_path / "predictions" / "prompt.jsonl"
    stamp = prompt_file.stat().st_mtime_ns
    hybrid = [*settings, "retrieval.method=hybrid", "retrieval.hybrid_weights=[1.0, 2.0]"]
    second = compare(
        load_config(ROOT / "configs" / "handbook.toml", hybrid), tmp_path, generator=generator, embedder=embedder
    )
    assert prompt_file.stat().st_mtime_ns == stamp
    assert (tmp_path / "predictions" / "rag.stale.jsonl").is_file()
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "rag.jsonl").read_text().splitlines()]
    before = [json.loads(line) for line in (tmp_path / "predictions" / "rag.stale.jsonl").read_text().splitlines()]
    assert [r["retrieved"] for r in rows] != [r["retrieved"] for r in before]  # BM25 changed some passages
    assert second["variants"]["prompt"]["metrics"] == first["variants"]["prompt"]["metrics"]


def test_fine_tuned_arms_are_scored_with_no_oracle_and_retrieved_context(tmp_path, generator, embedder):
    config = load_config(ROOT / "configs" / "handbook.toml", [*TINY, 'experiment.variants=["prompt","rag+ft"]'])
    report = compare(config, tmp_path, generator=generator, embedder=embedder)
    views = report["context_views"]["models"]
    assert list(views) == ["base", "rag+ft"]
    assert all(list(by) == ["none", "oracle", "retrieved"] for by in views.values())
    assert views["base"]["none"] == report["variants"]["prompt"]["metrics"]
    assert views["rag+ft"]["retrieved"] == report["variants"]["rag+ft"]["metrics"]

    def rows(name):
        return [json.loads(line) for line in (tmp_path / "predictions" / f"{name}.jsonl").read_text().splitlines()]

    for name in ("rag@oracle", "rag+ft@oracle"):  # the gold passage, which holds an answer
        for row in rows(name):
            assert len(row["retrieved"]) == 1
            assert any(a.lower() in row["prompt"].lower() for a in row["answers"])
    assert all(row["retrieved"] == [] and "Context:" not in row["prompt"] for row in rows("rag+ft@none"))
    assert [r["retrieved"] for r in rows("rag")] == [r["retrieved"] for r in rows("rag+ft")]
    assert "oracle context" in markdown(report)
    # The views reuse the variant's adapter: one trained, none for the views.
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["rag_ft"]


def test_sweep_ranks_settings_by_validation_loss_and_reuses_adapters(tmp_path, capsys):
    from ragft.cli import main

    args = ["sweep", str(ROOT / "configs" / "handbook.toml"), *TINY, "finetune.max_steps=3", "--out", str(tmp_path)]
    args += ["--grid", "finetune.rank=2,8", "--grid", "finetune.learning_rate=1e-4,3e-3", "--sample", "3"]
    assert main(args) == 0
    assert "best: finetune.rank=" in capsys.readouterr().out
    result = json.loads((tmp_path / "sweep.json").read_text())
    losses = [r["validation_loss"] for r in result["rows"]]
    assert len(losses) == 3 and losses == sorted(losses) and len(set(losses)) == 3
    assert result["validation_fraction"] == 0.1
    assert not (tmp_path / "predictions").exists()  # test examples were never scored
    stamps = sorted(p.stat().st_mtime_ns for p in (tmp_path / "sweep").glob("*/manifest.json"))
    assert main(args) == 0  # the same sweep again trains nothing
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "sweep").glob("*/manifest.json")) == stamps


def test_forgetting_check_scores_base_and_tuned_models_on_general_questions(tmp_path, generator, embedder, monkeypatch):
    settings = [*TINY, 'experiment.variants=["rag+ft"]', 'experiment.general_examples="../corpora/general/qa.jsonl"']
    config = load_config(ROOT / "configs" / "handbook.toml", settings)
    report = compare(config, tmp_path, generator=generator, embedder=embedder)
    f = report["forgetting"]
    assert f["n"] == 60 and list(f["models"]) == ["base", "rag+ft"] and list(f["changes"]) == ["rag+ft"]
    base_rows = (tmp_path / "predictions" / "general" / "base.jsonl").read_text().splitlines()
    tuned_rows = (tmp_path / "predictions" / "general" / "rag+ft.jsonl").read_text().splitlines()
    assert len(base_rows) == len(tuned_rows) == 60
    assert [json.loads(r)["output"] for r in base_rows] != [json.loads(r)["output"] for r in tuned_rows]
    change = f["changes"]["rag+ft"]["f1"]["mean"]
    assert change == pytest.approx(f["models"]["rag+ft"]["f1"]["mean"] - f["models"]["base"]["f1"]["mean"])
    assert "Forgetting check: 60 general questions" in markdown(report)

    # Everything is cached: the same experiment again loads no model at all.
    from ragft.generation import Generator
    from ragft.retrieval import Embedder

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Generator, "load", refuse)
    monkeypatch.setattr(Embedder, "__init__", refuse)
    again = compare(config, tmp_path)
    assert again["forgetting"] == f
