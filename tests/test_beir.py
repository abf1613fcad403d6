"""BEIR loading, ranking metrics, BM25 and fusion; SciFact numbers against published ones."""

import gzip
import json

import pytest
from helpers import data_dir

from ragft.cli import main
from ragft.errors import InputError
from ragft.metrics import mrr_at_k, ndcg_at_k
from ragft.retrieval.bm25 import BM25Retriever
from ragft.retrieval.hybrid import rrf
from ragft.tasks.beir import load_beir
from ragft.types import Chunk, Hit


def make_beir(folder, corpus_rows, qrels="query-id\tcorpus-id\tscore\nq1\td2\t1\nq1\tmissing\t1\n"):
    (folder / "qrels").mkdir(parents=True)
    with gzip.open(folder / "corpus.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in corpus_rows)
    (folder / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "tide gauge benchmark"}\n{"_id": "q2", "text": "unjudged"}\n'
    )
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


DOCS = [
    {"_id": "d1", "title": "Boats", "text": "The survey boat is a catamaran."},
    {"_id": "d2", "title": "Gauges", "text": "Every tide gauge is levelled against the benchmark."},
    {"_id": "d3", "title": "Dues", "text": "Annual dues are paid in January."},
]


def test_load_beir_joins_title_and_reports_unknown_qrels(tmp_path):
    data = load_beir(make_beir(tmp_path, DOCS))
    assert [d.id for d in data.documents] == ["d1", "d2", "d3"]
    assert data.documents[1].text.startswith("Gauges Every tide gauge")
    assert data.queries == {"q1": "tide gauge benchmark"}  # only judged queries
    assert data.qrels == {"q1": {"d2": 1}}
    assert data.unknown == [f"{tmp_path / 'qrels' / 'test.tsv'}:3"]


def test_duplicate_document_id_names_both_lines(tmp_path):
    with pytest.raises(InputError, match=r"id 'd1' is used by both \S*corpus.jsonl.gz:1 and \S*corpus.jsonl.gz:3"):
        load_beir(make_beir(tmp_path, [*DOCS[:2], DOCS[0]]))


def test_ranking_metrics():
    assert ndcg_at_k(["a", "b"], {"a": 1}, 10) == 1.0
    assert ndcg_at_k(["b", "a"], {"a": 1}, 10) == pytest.approx(1 / 1.5849625)
    assert ndcg_at_k(["b", "c"], {"a": 1}, 10) == 0.0
    assert mrr_at_k(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


def test_bm25_finds_the_lexical_match(tmp_path):
    data = load_beir(make_beir(tmp_path, DOCS))
    bm25 = BM25Retriever([Chunk(d.id, d.id, d.text, 0) for d in data.documents])
    (hits,) = bm25.retrieve(["levelling the gauges"], 3)  # stemming: levelling~levelled, gauges~gauge
    assert hits[0].chunk.id == "d2"


def test_rrf_rewards_agreement():
    c = {i: Chunk(i, i, i, 0) for i in "abc"}
    fused = rrf([[Hit(c["a"], 9, 0), Hit(c["b"], 8, 1)], [Hit(c["b"], 5, 0), Hit(c["c"], 4, 1)]], [1.0, 1.0])
    assert [h.chunk.id for h in fused] == ["b", "a", "c"]
    assert [h.rank for h in fused] == [0, 1, 2]
    weighted = rrf([[Hit(c["a"], 9, 0)], [Hit(c["c"], 4, 0)]], [1.0, 3.0])
    assert weighted[0].chunk.id == "c"


@pytest.mark.data
def test_scifact_bm25_matches_anserini(capsys, tmp_path):
    assert main(["eval-retrieval", str(data_dir() / "scifact"), "--method", "bm25", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["queries"] == 300 and report["documents"] == 5183 and not report["unknown_qrels"]
    assert abs(report["pipelines"]["bm25"]["metrics"]["ndcg@10"]["mean"] - 0.679) <= 0.02
    assert "| bm25 | 0.6" in (tmp_path / "report.md").read_text()


@pytest.mark.data
@pytest.mark.slow
def test_scifact_dense_matches_mteb_and_hybrid_beats_both(tmp_path):
    args = ["eval-retrieval", str(data_dir() / "scifact"), "--method", "dense", "bm25", "hybrid"]
    assert main([*args, "--index", str(tmp_path / "index"), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    ndcg = {name: v["metrics"]["ndcg@10"]["mean"] for name, v in report["pipelines"].items()}
    assert abs(ndcg["dense"] - 0.6451) <= 0.01
    assert ndcg["hybrid"] >= 0.70 and ndcg["hybrid"] > max(ndcg["dense"], ndcg["bm25"])
    gain = next(c for c in report["comparisons"] if (c["from"], c["to"], c["metric"]) == ("dense", "hybrid", "ndcg@10"))
    assert gain["low"] > 0
