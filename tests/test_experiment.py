"""Runner behaviour beyond the CLI: several training seeds, and re-running one changed pipeline."""

import json

import pytest
from helpers import ROOT, TINY

from ragft.config import load_config
from ragft.experiment import compare
from ragft.render.markdown import markdown
from ragft.runner.run import plan


def test_several_seeds_train_each_and_report_the_spread(tmp_path, generator, embedder):
    config = load_config(
        ROOT / "configs" / "handbook.toml", [*TINY, 'experiment.presets=["prompt","ft"]', "experiment.seeds=[0, 1]"]
    )
    report = compare(config, tmp_path, generator=generator, embedder=embedder).data
    spread = report["seed_spread"]["ft"]
    assert spread["seeds"] == [0, 1] and len(spread["f1"]["per_seed"]) == 2
    assert spread["f1"]["min"] <= spread["f1"]["mean"] <= spread["f1"]["max"]
    f1 = report["pipelines"]["ft"]["metrics"]["f1"]
    assert f1["mean"] == pytest.approx(spread["f1"]["mean"]) and f1["seeds"] == 2  # over seeds, and so is its interval
    losses = [
        json.loads((tmp_path / "adapters" / name / "manifest.json").read_text())["losses"]
        for name in ("ft", "ft_seed1")
    ]
    assert losses[0] != losses[1]  # really another seed
    assert "Fine-tuned pipelines across training seeds" in markdown(report)
    assert "prompt" not in report["seed_spread"]  # untrained pipelines are deterministic


def test_changing_one_pipeline_setting_reruns_only_that_pipeline(tmp_path, generator, embedder):
    settings = [*TINY, 'experiment.presets=["prompt","ft"]']
    compare(load_config(ROOT / "configs" / "handbook.toml", settings), tmp_path, generator=generator, embedder=embedder)
    prompt_file, adapter = tmp_path / "predictions" / "prompt.jsonl", tmp_path / "adapters" / "ft" / "manifest.json"
    stamps = prompt_file.stat().st_mtime_ns, adapter.stat().st_mtime_ns
    compare(
        load_config(ROOT / "configs" / "handbook.toml", [*settings, "finetune.rank=4"]),
        tmp_path,
        generator=generator,
        embedder=embedder,
    )
    assert prompt_file.stat().st_mtime_ns == stamps[0]  # untouched
    assert adapter.stat().st_mtime_ns != stamps[1]  # retrained
    assert (tmp_path / "predictions" / "ft.stale.jsonl").is_file()


def test_retrieval_settings_reach_the_rag_arm_and_rerun_only_it(tmp_path, generator, embedder):
    settings = [*TINY, 'experiment.presets=["prompt","rag"]']
    first = compare(
        load_config(ROOT / "configs" / "handbook.toml", settings), tmp_path, generator=generator, embedder=embedder
    ).data
    prompt_file = tmp_path / "predictions" / "prompt.jsonl"
    stamp = prompt_file.stat().st_mtime_ns
    hybrid = [*settings, "retrieval.method=hybrid", "retrieval.hybrid_weights=[1.0, 2.0]"]
    second = compare(
        load_config(ROOT / "configs" / "handbook.toml", hybrid), tmp_path, generator=generator, embedder=embedder
    ).data
    assert prompt_file.stat().st_mtime_ns == stamp
    assert (tmp_path / "predictions" / "rag.stale.jsonl").is_file()
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "rag.jsonl").read_text().splitlines()]
    before = [json.loads(line) for line in (tmp_path / "predictions" / "rag.stale.jsonl").read_text().splitlines()]
    assert [r["retrieved"] for r in rows] != [r["retrieved"] for r in before]  # BM25 changed some passages
    assert second["pipelines"]["prompt"]["metrics"] == first["pipelines"]["prompt"]["metrics"]


def test_fine_tuned_arms_are_scored_with_no_oracle_and_retrieved_context(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())  # prompt, rag, rag+ft with the views on
    views = report["context_views"]["models"]
    assert list(views) == ["base", "rag+ft"]
    assert all(list(by) == ["none", "oracle", "retrieved"] for by in views.values())
    assert views["base"]["none"] == report["pipelines"]["prompt"]["metrics"]
    assert views["rag+ft"]["retrieved"] == report["pipelines"]["rag+ft"]["metrics"]

    def rows(name):
        return [json.loads(line) for line in (tiny_run / "predictions" / f"{name}.jsonl").read_text().splitlines()]

    for name in ("base@oracle", "rag+ft@oracle"):  # the gold passage, which holds an answer
        for row in rows(name):
            assert len(row["retrieved"]) == 1
            assert any(a.lower() in row["prompt"].lower() for a in row["answers"])
    assert all(row["retrieved"] == [] and "Context:" not in row["prompt"] for row in rows("rag+ft@none"))
    assert views["base"]["retrieved"] == report["pipelines"]["rag"]["metrics"]  # the same prompts: rag's answers
    assert [r["retrieved"] for r in rows("rag")] == [r["retrieved"] for r in rows("rag+ft")]
    assert "oracle context" in markdown(report)
    # The views reuse the pipeline's adapter: one trained, none for the views.
    assert sorted(p.name for p in (tiny_run / "adapters").iterdir()) == ["rag_ft"]


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
    settings = [*TINY, 'experiment.presets=["ft"]', 'experiment.general_examples="../corpora/general/qa.jsonl"']
    settings.append('models.dtype="float32"')  # the fixture's dtype: the re-run below loads nothing
    config = load_config(ROOT / "configs" / "handbook.toml", settings)
    report = compare(config, tmp_path, generator=generator, embedder=embedder).data
    f = report["forgetting"]
    assert f["n"] == 60 and list(f["models"]) == ["base", "ft"] and list(f["changes"]) == ["ft"]
    base_rows = (tmp_path / "predictions" / "general" / "base.jsonl").read_text().splitlines()
    tuned_rows = (tmp_path / "predictions" / "general" / "ft.jsonl").read_text().splitlines()
    assert len(base_rows) == len(tuned_rows) == 60
    assert [json.loads(r)["output"] for r in base_rows] != [json.loads(r)["output"] for r in tuned_rows]
    change = f["changes"]["ft"]["f1"]["mean"]
    assert change == pytest.approx(f["models"]["ft"]["f1"]["mean"] - f["models"]["base"]["f1"]["mean"])
    assert "Forgetting check: 60 general questions" in markdown(report)

    # Everything is cached: the same experiment again loads no model at all.
    from ragft.generation import Generator
    from ragft.retrieval import Embedder

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Generator, "load", refuse)
    monkeypatch.setattr(Embedder, "__init__", refuse)
    again = compare(config, tmp_path).data
    assert again["forgetting"] == f


def _handbook_copy(tmp_path):
    """The handbook's examples file, copied so a test can edit it."""
    path = tmp_path / "qa.jsonl"
    path.write_text((ROOT / "corpora" / "handbook" / "qa.jsonl").read_text())
    return path


def _adapter_key(run):
    return json.loads((run / "adapters" / "rag_ft" / "manifest.json").read_text())["fingerprint"]


def test_edited_training_answers_retrain_the_adapter_and_another_test_slice_rekeys_it(tmp_path, generator, embedder):
    examples = _handbook_copy(tmp_path)
    settings = [*TINY, 'experiment.presets=["rag+ft"]', "experiment.context_views=false"]
    settings.append(f"data.examples={json.dumps(str(examples))}")
    run = tmp_path / "run"

    def go(*extra):
        config = load_config(ROOT / "configs" / "handbook.toml", [*settings, *extra])
        compare(config, run, generator=generator, embedder=embedder)
        return _adapter_key(run)

    first = go()
    assert go() == first  # unchanged: reused
    rows = [json.loads(line) for line in examples.read_text().splitlines()]
    first_train = next(r for r in rows if r["split"] == "train")
    first_train["answers"] = ["a corrected answer"]
    examples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    edited = go()
    assert edited != first  # the training data changed: trained again
    # More test questions keep more documents out of RAFT prompts: other training data.
    tests = [r for r in rows if r["split"] == "test"]
    assert {r["doc_id"] for r in tests[:12]} != {r["doc_id"] for r in tests[:6]}
    more = plan(load_config(ROOT / "configs" / "handbook.toml", [*settings, "data.test_limit=12"]), run)
    assert more["rag+ft"]["adapter"] != edited  # the key the runner retrains by (test_keys walks every key)


def test_index_and_embedder_settings_reach_the_retrieved_passages(tmp_path, generator, embedder):
    settings = [*TINY, 'experiment.presets=["rag"]', 'retrieval.index="hnsw"']
    run = tmp_path / "run"

    def go(*extra):
        compare(load_config(ROOT / "configs" / "handbook.toml", [*settings, *extra]), run, generator, embedder)
        rows = [json.loads(line) for line in (run / "retrieval" / "test_hits.jsonl").read_text().splitlines()]
        return {r["key"] for r in rows}, (run / "predictions" / "rag.jsonl").stat().st_mtime_ns

    keys, stamp = go()
    assert go() == (keys, stamp)
    more_keys, _ = go("retrieval.ef_search=64")
    assert more_keys > keys  # searched again
    bf16_keys, _ = go("retrieval.ef_search=64", 'models.embedder_dtype="bfloat16"')
    assert bf16_keys > more_keys
    manifests = [json.loads(p.read_text()) for p in (run / "index").glob("*/manifest.json")]
    assert sorted(m["embedder_dtype"] for m in manifests) == ["bfloat16", "float32"]  # one index each


def test_dtype_auto_reuses_predictions_made_in_the_dtype_it_resolves_to(tmp_path, embedder, monkeypatch):
    from ragft.generation import Generator, pick_dtype

    settings = [*TINY, 'experiment.presets=["prompt"]', "experiment.context_views=false"]
    run = tmp_path / "run"
    compare(load_config(ROOT / "configs" / "handbook.toml", settings), run, embedder=embedder)  # loads `auto`
    stamp = (run / "predictions" / "prompt.jsonl").stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Generator, "load", refuse)
    resolved = str(pick_dtype("auto")).removeprefix("torch.")
    named = [*settings, f"models.dtype={json.dumps(resolved)}"]
    compare(load_config(ROOT / "configs" / "handbook.toml", named), run, embedder=embedder)
    assert (run / "predictions" / "prompt.jsonl").stat().st_mtime_ns == stamp


def test_compare_runs_only_the_named_pipelines_and_reports_the_others_finished_there(tiny_run, tmp_path, monkeypatch):
    import shutil

    from ragft.generation import Generator

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # prompt, rag and rag+ft finished, with the context views
    monkeypatch.setattr(Generator, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a model loaded")))
    settings = [*TINY, "experiment.context_views=true"]
    files = sorted((run / "predictions").glob("*.jsonl"))
    stamps = [f.stat().st_mtime_ns for f in files]
    report = compare(load_config(ROOT / "configs" / "handbook.toml", settings), run, only=["prompt"]).data
    assert list(report["pipelines"]) == ["prompt", "rag", "rag+ft"] and "left_out" not in report
    assert list(report["context_views"]["models"]) == ["base", "rag+ft"]
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read, none made again

    changed = load_config(ROOT / "configs" / "handbook.toml", [*settings, "retrieval.k=2"])  # rag's keys move
    report = compare(changed, run, only=["prompt"]).data
    assert list(report["pipelines"]) == ["prompt"] and report["left_out"] == ["rag", "rag+ft"]
    assert "Not in this report: rag, rag+ft" in markdown(report)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # the others' finished files are left as they were
    assert not list((run / "predictions").glob("*.stale.jsonl"))

    with pytest.raises(Exception, match="no such pipeline in the config; did you mean 'rag'"):
        compare(changed, run, only=["rga"])
