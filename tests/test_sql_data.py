"""Spider and plain SQLite loaders; the scorer agrees with itself on every Spider dev query."""

import json
import sqlite3

import pytest
from helpers import data_dir

from ragft.errors import ConfigError, InputError
from ragft.sql.data import load_spider, load_sqlite_task, sample_rows, schema_from_tables_entry
from ragft.sql.sandbox import Sandbox
from ragft.sql.score import execution_match


def test_tables_entry_becomes_create_statements_with_keys():
    entry = {
        "table_names_original": ["people", "pet"],
        "column_names_original": [[-1, "*"], [0, "id"], [0, "Home Town"], [1, "owner_id"]],
        "column_types": ["text", "number", "text", "number"],
        "primary_keys": [1],
        "foreign_keys": [[3, 1]],
    }
    schema = schema_from_tables_entry(entry)
    assert 'CREATE TABLE "people" (\n  "id" number primary key,\n  "Home Town" text\n);' in schema
    assert 'foreign key ("owner_id") references "people"("id")' in schema
    conn = sqlite3.connect(":memory:")
    conn.executescript(schema)  # valid SQL


def test_plain_sqlite_task_and_bad_rows(tmp_path):
    db = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO item (name) VALUES ('lamp')")
    conn.commit()
    conn.close()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"question": "How many items?", "query": "SELECT count(*) FROM item", "split": "test"}))
    task = load_sqlite_task(db, pairs)
    assert task.examples[0].db_id == "shop" and "CREATE TABLE item" in task.schemas["shop"]
    assert "lamp" in sample_rows(db)
    pairs.write_text('{"question": "q", "query": "SELECT 1", "split": "dev"}\n')
    with pytest.raises(InputError, match="pairs.jsonl:1: split must be train or test"):
        load_sqlite_task(db, pairs)


@pytest.mark.data
def test_every_spider_dev_gold_query_matches_itself():
    task = load_spider(data_dir() / "spider", splits=("dev",))
    dev = task.split("dev")
    assert len(dev) == 1026 and len(task.databases) == 20
    sandboxes = {db: Sandbox(path, timeout_s=30) for db, path in task.databases.items()}
    wrong = [e.id for e in dev if not execution_match(sandboxes[e.db_id], e.query, e.query)[0]]
    assert wrong == []


def test_bundled_demo_is_complete_and_every_gold_query_returns_rows():
    from helpers import ROOT

    folder = ROOT / "corpora" / "tidewatch-sql"
    task = load_sqlite_task(folder / "tidewatch.sqlite", folder / "pairs.jsonl")
    assert len(task.examples) >= 150
    assert len(task.split("train")) >= 100 and len(task.split("test")) >= 50
    with Sandbox(folder / "tidewatch.sqlite") as sandbox:
        for e in task.examples:
            result = sandbox.run(e.query)
            assert result.ok and result.rows and result.rows[0][0] is not None, e


def test_sql_ladder_runs_end_to_end_on_the_bundled_demo(tmp_path, generator, embedder):
    from helpers import ROOT, TINY

    from ragft.config import load_config
    from ragft.experiment import compare
    from ragft.render.markdown import markdown

    settings = [*TINY, 'experiment.presets=["rag"]', "generation.max_new_tokens=48"]  # rag+ft: the SQL notebook
    config = load_config(ROOT / "configs" / "tidewatch-sql.toml", settings)
    report = compare(config, tmp_path, generator=generator, embedder=embedder).data
    assert report["metric_names"] == ["ex", "valid"]
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "rag.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["retrieved"]) == 3 and "Solved examples" in r["prompt"] for r in rows)
    for r in rows:
        assert r["scores"]["ex"] in (0.0, 1.0) and (r["scores"]["ex"] == 1.0) == (r["error"] == "")
    text = markdown(report)
    assert "EX (95% CI)" in text and "valid SQL (95% CI)" in text
    assert (tmp_path / "report.html").is_file()
    again = compare(config, tmp_path, generator=generator, embedder=embedder).data  # all cached
    assert again["pipelines"]["rag"]["metrics"] == report["pipelines"]["rag"]["metrics"]
    _python_sql_pipeline_reads_what_toml_made(tmp_path, generator, embedder, rows)


def _python_sql_pipeline_reads_what_toml_made(run, generator, embedder, rows):
    """The same `rag` pipeline built in Python over `ragft.SQLTask` has the TOML run's keys:
    it reads that run's predictions back (same prompts, same path) and makes none."""
    from helpers import ROOT

    import ragft

    folder = ROOT / "corpora" / "tidewatch-sql"
    task = ragft.SQLTask.from_sqlite(folder / "tidewatch.sqlite", folder / "pairs.jsonl", test_limit=6, train_limit=16)
    gen = generator.with_decoding(batch_size=8, max_new_tokens=48, seed=0)
    examples = ragft.SolvedExamples(k=3, embedder=embedder)
    stamp = (run / "predictions" / "rag.jsonl").stat().st_mtime_ns
    made = ragft.Pipeline("rag", gen, retriever=examples).predict(task, run)
    assert {p.example_id: p.output for p in made} == {r["example_id"]: r["output"] for r in rows}
    assert (run / "predictions" / "rag.jsonl").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="shown solved examples, not passages"):
        index = ragft.Index.build(ragft.load_corpus(ROOT / "corpora" / "handbook" / "docs"), embedder)
        ragft.Pipeline("rag", gen, retriever=index.dense(k=3)).predict(task, run)
    with pytest.raises(Exception, match="templates apply to qa tasks"):
        ragft.Pipeline("p", gen, template="qa").predict(task, run)
