"""The `ragft` command end to end, with the real offline models."""

import json
import shutil
import subprocess
import sys

from helpers import HANDBOOK, ROOT, TINY

from ragft.cli import main


def test_import_and_help_stay_light():
    code = (
        "import sys, ragft, ragft.cli\n"
        "try:\n    ragft.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'faiss', 'sentence_transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_models_lists_installed_aliases(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["alias"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["smollm2-135m-instruct"]["installed"] == "yes"
    assert rows["all-minilm-l6-v2"]["kind"] == "embedder"


def test_index_then_search(tmp_path, capsys):
    assert main(["index", str(HANDBOOK / "docs"), "--out", str(tmp_path / "idx")]) == 0
    assert "indexed 33 documents" in capsys.readouterr().out
    assert main(["search", str(tmp_path / "idx"), "Who keeps the boat book?", "-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1. [") and "survey-boats#" in out[0]


def test_reindexing_updates_in_place_embedding_only_changed_files(tmp_path, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(HANDBOOK / "docs", docs)
    args = ["index", str(docs), "--out", str(tmp_path / "idx"), "--unit", "tokens", "--index-type", "hnsw"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "(hnsw index)" in first and "0 removed" in first
    (docs / "tide-gauges.md").write_text("The gauge keeper is Ilse Marrow.\n")
    (docs / "chart-room.md").unlink()
    (docs / "empty.md").write_text("")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "32 documents, 1 empty skipped" in out and "1 texts embedded" in out
    assert main(["search", str(tmp_path / "idx"), "Who is the gauge keeper?", "-k", "1"]) == 0
    assert "tide-gauges#0" in capsys.readouterr().out
    (docs / "bad.txt").write_bytes(b"\xff\xfe")
    assert main(args) == 2
    assert f"{docs / 'bad.txt'}:1: not valid UTF-8" in capsys.readouterr().err
    assert main([*args, "--skip-bad"]) == 0
    assert "0 texts embedded" in capsys.readouterr().out


def test_errors_are_one_line_naming_the_problem(tmp_path, capsys):
    assert main(["index", str(tmp_path), "--out", str(tmp_path / "idx")]) == 2
    assert f"ragft: error: {tmp_path}: no documents found" in capsys.readouterr().err
    config = tmp_path / "bad.toml"
    config.write_text("[retrieval]\nkk = 3\n")
    assert main(["compare", str(config)]) == 2
    assert "did you mean 'retrieval.k'" in capsys.readouterr().err


def test_compare_runs_every_pipeline_end_to_end_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    presets = 'experiment.presets=["prompt","fewshot","rag","ft","rag+ft"]'
    args = ["compare", str(ROOT / "configs" / "handbook.toml"), *TINY, presets, "--out", str(run)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| rag+ft |" in out and "prompt -> fewshot" in out and out.index("## Verdict") < out.index("| rag+ft |")

    report = json.loads((run / "report.json").read_text())
    assert list(report["pipelines"]) == ["prompt", "fewshot", "rag", "ft", "rag+ft"]
    assert report["pipelines"]["rag+ft"]["costs"]["training"]["steps"] == 2
    costs = report["pipelines"]["rag+ft"]["costs"]
    assert costs["peak_rss_bytes"] > 100 * 2**20 and costs["adapter_bytes"] > 0 and costs["queries_per_second"] > 0
    assert report["retrieval"]["index_bytes"] > 0
    assert [(c["from"], c["to"]) for c in report["comparisons"] if c["metric"] == "em"][:2] == [
        ("prompt", "fewshot"),
        ("prompt", "rag"),
    ]
    assert len(report["comparisons"]) == 3 * 10 and len(report["steps"]) == 4  # F1, EM, lenient x 10 pairs
    assert report["environment"]["versions"]["torch"]
    assert report["environment"]["auto_dtype"] in ("bfloat16", "float32")
    assert (run / "report.md").read_text().startswith("# handbook")
    assert json.loads((run / "config.json").read_text())["data"]["test_limit"] == 6

    rows = [json.loads(line) for line in (run / "predictions" / "rag.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["retrieved"]) == 3 and "Context:" in r["prompt"] for r in rows)
    prompt_rows = [json.loads(line) for line in (run / "predictions" / "prompt.jsonl").read_text().splitlines()]
    assert all(r["retrieved"] == [] and "Context:" not in r["prompt"] for r in prompt_rows)

    # An unchanged re-run recomputes nothing (only the report files are written again).
    stamps = {
        p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.suffix not in (".json", ".md", ".html")
    }
    assert main(args) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}

    # Interrupted mid-pipeline (a torn last line): a re-run fills in the rest and reuses the adapter.
    adapter_manifest = run / "adapters" / "rag_ft" / "manifest.json"
    stamp = adapter_manifest.stat().st_mtime_ns
    preds = run / "predictions" / "rag+ft.jsonl"
    before = preds.read_text().splitlines()
    preds.write_text("\n".join(before[:2]) + "\n" + before[2][:40])
    assert main(args) == 0
    outputs = {json.loads(x)["example_id"]: json.loads(x)["output"] for x in preds.read_text().splitlines()}
    assert outputs == {json.loads(x)["example_id"]: json.loads(x)["output"] for x in before}
    assert adapter_manifest.stat().st_mtime_ns == stamp
