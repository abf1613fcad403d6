"""Hugging Face `datasets` where users keep their data: tasks from a `Dataset` or a
`DatasetDict` (built here from the bundled local files), and a report's predictions back as
a `Dataset`."""

from __future__ import annotations

import json

import pytest
from helpers import HANDBOOK, ROOT

import ragft
from ragft.errors import InputError

datasets = pytest.importorskip("datasets")

SQL = ROOT / "corpora" / "tidewatch-sql"


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_qa_task_from_a_dataset_is_the_task_from_its_file():
    docs = ragft.load_corpus(HANDBOOK / "docs")
    from_file = ragft.QATask.from_jsonl(HANDBOOK / "qa.jsonl", docs, test_limit=20, train_limit=30)
    data = datasets.Dataset.from_json(str(HANDBOOK / "qa.jsonl"))
    from_data = ragft.QATask.from_dataset(data, docs, test_limit=20, train_limit=30)
    assert (from_data.train, from_data.test) == (from_file.train, from_file.test)

    # a DatasetDict with its own column names and SQuAD's answers layout; splits from its keys
    rows = _rows(HANDBOOK / "qa.jsonl")
    renamed = {
        split: datasets.Dataset.from_list(
            [
                {"q": r["question"], "answers": {"text": r["answers"]}, "doc": r["doc_id"]}
                for r in rows
                if r["split"] == split
            ]
        )
        for split in ("train", "test")
    }
    task = ragft.QATask.from_dataset(
        datasets.DatasetDict({"train": renamed["train"], "validation": renamed["test"]}),
        docs,
        question="q",
        doc_id="doc",
        id=None,
        splits={"validation": "test"},
    )
    assert [e.question for e in task.test] == [
        e.question for e in ragft.QATask.from_jsonl(HANDBOOK / "qa.jsonl", docs).test
    ]
    first_test = next(r for r in rows if r["split"] == "test")
    assert task.test[0].id == "test-0" and task.test[0].answers == tuple(first_test["answers"])
    assert {e.doc_id for e in task.train} <= {d.id for d in docs}


def test_a_qa_task_builds_its_corpus_from_a_context_column():
    data = datasets.Dataset.from_list(
        [
            {"id": "a", "question": "Who?", "answers": ["Ann"], "context": "Ann rows.", "split": "train"},
            {"id": "b", "question": "What?", "answers": ["boats"], "context": "Ann rows.", "split": "test"},
            {"id": "c", "question": "When?", "answers": ["1987"], "context": "Founded in 1987.", "split": "test"},
        ]
    )
    task = ragft.QATask.from_dataset(data, context="context")
    assert len(task.corpus) == 2 and task.train[0].doc_id == task.test[0].doc_id != task.test[1].doc_id


def test_a_bad_column_is_named_beside_the_columns_there_are():
    data = datasets.Dataset.from_json(str(HANDBOOK / "qa.jsonl"))
    docs = ragft.load_corpus(HANDBOOK / "docs")
    with pytest.raises(
        InputError, match="no column 'questoin' \\(the question\\); did you mean 'question'\\?; the dataset"
    ):
        ragft.QATask.from_dataset(data, docs, question="questoin")
    with pytest.raises(InputError, match="split 'holdout' of the DatasetDict is not one ragft knows"):
        ragft.QATask.from_dataset(datasets.DatasetDict({"train": data, "holdout": data}), docs)
    with pytest.raises(InputError, match="from a corpus or from a context column: give one of them \\(neither"):
        ragft.QATask.from_dataset(data)
    with pytest.raises(InputError, match="give one of them \\(both were given\\)"):
        ragft.QATask.from_dataset(data, docs, context="question")


def test_a_sql_task_from_a_dataset_is_the_task_from_its_file():
    from_file = ragft.SQLTask.from_sqlite(SQL / "tidewatch.sqlite", SQL / "pairs.jsonl", test_limit=10, train_limit=20)
    data = datasets.Dataset.from_json(str(SQL / "pairs.jsonl"))
    from_data = ragft.SQLTask.from_dataset(data, SQL / "tidewatch.sqlite", test_limit=10, train_limit=20)
    assert (from_data.train, from_data.test, from_data.schemas) == (from_file.train, from_file.test, from_file.schemas)
    with pytest.raises(InputError, match="no column 'sql' \\(the query\\)"):
        ragft.SQLTask.from_dataset(data, SQL / "tidewatch.sqlite", query="sql")

    # Spider's layout on the Hugging Face hub: train and validation, the validation pairs tested
    rows = _rows(SQL / "pairs.jsonl")
    parts = {
        s: datasets.Dataset.from_list([r for r in rows if r["split"] == s]).remove_columns("split")
        for s in ("train", "test")
    }
    hub = datasets.DatasetDict({"train": parts["train"], "validation": parts["test"]})
    spider_like = ragft.SQLTask.from_dataset(hub, SQL / "tidewatch.sqlite")
    assert [e.query for e in spider_like.test] == [
        e.query for e in ragft.SQLTask.from_sqlite(SQL / "tidewatch.sqlite", SQL / "pairs.jsonl").test
    ]
    twice = datasets.Dataset.from_list([rows[0], rows[0]])
    with pytest.raises(InputError, match="duplicate id 'tw-000'"):
        ragft.SQLTask.from_dataset(twice, SQL / "tidewatch.sqlite")


def test_a_reports_predictions_come_back_as_a_dataset(tiny_run):
    report = ragft.Report.load(tiny_run)
    rows = report.predictions_dataset("rag")
    assert isinstance(rows, datasets.Dataset) and len(rows) == report.pipelines["rag"].n
    assert {"example_id", "output", "answers", "retrieved", "scores"} <= set(rows.column_names)
    assert rows[0]["scores"]["f1"] == report.predictions["rag"][0].scores["f1"]
    with pytest.raises(KeyError, match="no pipeline 'nope'"):
        report.predictions_dataset("nope")
