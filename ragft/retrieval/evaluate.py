"""Retriever evaluation on judged queries: nDCG@10, MRR@10, recall@k, with bootstrap CIs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragft.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from ragft.retrieval.retriever import Retriever
from ragft.stats import bootstrap


def evaluate_retriever(
    retriever: Retriever,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    recall_ks: tuple[int, ...] = (10, 100),
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores over document ids (hits on several chunks of one document count once)."""
    ids = list(queries)
    depth = max(max(recall_ks), 10)
    runs = retriever.retrieve([queries[q] for q in ids], depth)
    per_query: dict[str, list[float]] = {"ndcg@10": [], "mrr@10": [], **{f"recall@{k}": [] for k in recall_ks}}
    for qid, hits in zip(ids, runs):
        docs = list(dict.fromkeys(h.chunk.doc_id for h in hits))
        relevant = {d for d, r in qrels[qid].items() if r > 0}
        per_query["ndcg@10"].append(ndcg_at_k(docs, qrels[qid], 10))
        per_query["mrr@10"].append(mrr_at_k(docs, relevant, 10))
        for k in recall_ks:
            per_query[f"recall@{k}"].append(recall_at_k(docs, relevant, k))
    return {
        "queries": len(ids),
        "metrics": {name: asdict(bootstrap(values, samples, seed)) for name, values in per_query.items()},
    }


def run_beir_eval(
    path: str | Path,
    split: str = "test",
    method: str = "hybrid",
    embedder_name: str = "all-minilm-l6-v2",
    index_dir: str | Path | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Score one retriever on a BEIR folder; whole documents are the retrieval units."""
    from ragft.io import write_json_atomic, write_text_atomic
    from ragft.report import environment
    from ragft.tasks.beir import load_beir
    from ragft.types import Chunk

    data = load_beir(path, split)
    chunks = [Chunk(doc.id, doc.id, doc.text, 0) for doc in data.documents]
    parts: list[Retriever] = []
    if method in ("dense", "hybrid"):
        parts.append(_dense(chunks, embedder_name, index_dir))
    if method in ("bm25", "hybrid"):
        from ragft.retrieval.bm25 import BM25Retriever

        parts.append(BM25Retriever(chunks))
    if len(parts) == 1:
        retriever = parts[0]
    else:
        from ragft.retrieval.hybrid import HybridRetriever

        retriever = HybridRetriever(parts)
    report = {
        "name": f"{Path(path).name}-{split}-{method}",
        "method": method,
        "embedder": embedder_name if method != "bm25" else None,
        "documents": len(chunks),
        "unknown_qrels": data.unknown,
        **evaluate_retriever(retriever, data.queries, data.qrels),
        "environment": environment(),
    }
    if out is not None:
        write_json_atomic(Path(out) / "report.json", report)
        write_text_atomic(Path(out) / "report.md", markdown(report))
    return report


def _dense(chunks: list[Any], embedder_name: str, index_dir: str | Path | None) -> Retriever:
    """Dense retriever over the chunks, reusing a saved index of the same corpus and embedder."""
    from ragft.models import model_id
    from ragft.retrieval import DenseRetriever, Embedder
    from ragft.retrieval.build import sync_index

    embedder = Embedder(embedder_name)
    index, _ = sync_index(index_dir, chunks, model_id(embedder_name), lambda: embedder)
    return DenseRetriever(embedder, index)


def markdown(report: dict[str, Any]) -> str:
    rows = [f"| {k} | {v['mean']:.4f} | {v['low']:.4f}-{v['high']:.4f} |" for k, v in report["metrics"].items()]
    unknown = f"\n\n{len(report['unknown_qrels'])} qrels rows point at unknown ids." if report["unknown_qrels"] else ""
    return (
        f"# {report['name']}\n\n{report['queries']} queries, {report['documents']} documents, "
        f"method {report['method']}.\n\n| metric | mean | 95% CI |\n|---|---|---|\n" + "\n".join(rows) + unknown + "\n"
    )
