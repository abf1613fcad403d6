"""Retriever evaluation on judged queries: nDCG@10, MRR@10, recall@k with bootstrap CIs.

Several retrieval pipelines (dense, bm25, hybrid, each optionally with HyDE, multi-query
expansion or reranking) are scored on the same queries and written in the comparison
report's layout: `pipelines` with metrics and costs, paired `comparisons`, `environment`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragft.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from ragft.retrieval.compose import QuerySide, make_retriever
from ragft.retrieval.retriever import Retriever
from ragft.stats import bootstrap, paired_difference

PRIMARY = "ndcg@10"


def per_query_scores(
    retriever: Retriever, queries: dict[str, str], qrels: dict[str, dict[str, int]], recall_ks: tuple[int, ...]
) -> tuple[dict[str, list[float]], float]:
    """Each metric's per-query values (over document ids: several chunks of one document
    count once), and the seconds the retrieval took."""
    ids = list(queries)
    depth = max(max(recall_ks), 10)
    start = time.perf_counter()
    runs = retriever.retrieve([queries[q] for q in ids], depth)
    seconds = time.perf_counter() - start
    values: dict[str, list[float]] = {"ndcg@10": [], "mrr@10": [], **{f"recall@{k}": [] for k in recall_ks}}
    for qid, hits in zip(ids, runs):
        docs = list(dict.fromkeys(h.chunk.doc_id for h in hits))
        relevant = {d for d, r in qrels[qid].items() if r > 0}
        values["ndcg@10"].append(ndcg_at_k(docs, qrels[qid], 10))
        values["mrr@10"].append(mrr_at_k(docs, relevant, 10))
        for k in recall_ks:
            values[f"recall@{k}"].append(recall_at_k(docs, relevant, k))
    return values, seconds


def evaluate_retriever(
    retriever: Retriever,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    recall_ks: tuple[int, ...] = (10, 100),
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """One retriever's metrics with bootstrap intervals, and its speed."""
    values, seconds = per_query_scores(retriever, queries, qrels, recall_ks)
    return _scored(values, seconds, samples, seed)


def _scored(values: dict[str, list[float]], seconds: float, samples: int, seed: int) -> dict[str, Any]:
    n = len(next(iter(values.values())))
    return {
        "n": n,
        "metrics": {name: asdict(bootstrap(v, samples, seed)) for name, v in values.items()},
        "costs": {"seconds_per_query": seconds / max(1, n), "queries_per_second": n / max(seconds, 1e-9)},
    }


def run_beir_eval(
    path: str | Path,
    split: str = "test",
    methods: tuple[str, ...] = ("hybrid",),
    embedder_name: str = "all-minilm-l6-v2",
    index_dir: str | Path | None = None,
    query_side: QuerySide | None = None,
    generator_name: str = "smollm2-135m-instruct",
    limit: int = 0,
    samples: int = 2000,
    seed: int = 0,
    embedder_dtype: str = "float32",
) -> dict[str, Any]:
    """Score retrieval pipelines on a BEIR folder; whole documents are the retrieval units."""
    from ragft.runner.environment import environment
    from ragft.tasks.beir import load_beir
    from ragft.types import Chunk

    data = load_beir(path, split)
    queries = dict(list(data.queries.items())[:limit]) if limit > 0 else data.queries
    chunks = [Chunk(doc.id, doc.id, doc.text, 0) for doc in data.documents]
    qs = query_side or QuerySide()
    dense = (
        _dense(chunks, embedder_name, index_dir, embedder_dtype)
        if any(m != "bm25" for m in methods) or qs.hyde
        else None
    )
    generator = None
    if qs.hyde or qs.multi_query or qs.rerank == "generator":
        from ragft.generation import Generator

        generator = Generator.load(generator_name, batch_size=8)
    pipelines: dict[str, Any] = {}
    per_query: dict[str, dict[str, list[float]]] = {}
    for method in methods:
        name = method + qs.suffix()
        retriever = make_retriever(method, chunks, dense, generator, qs)
        per_query[name], seconds = per_query_scores(retriever, queries, data.qrels, (10, 100))
        pipelines[name] = _scored(per_query[name], seconds, samples, seed)
    names = list(pipelines)
    comparisons = [
        {"from": a, "to": b, "metric": metric, **asdict(paired_difference(x, per_query[b][metric], samples, seed))}
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        for metric, x in per_query[a].items()
        if metric in (PRIMARY, "recall@100")
    ]
    report = {
        "name": f"{Path(path).name}-{split}",
        "task": "retrieval",
        "embedder": embedder_name,
        "generator": generator_name if generator is not None else None,
        "documents": len(chunks),
        "queries": len(queries),
        "unknown_qrels": data.unknown,
        "pipelines": pipelines,
        "comparisons": comparisons,
        "environment": environment(),
    }
    return report


def _dense(chunks: list[Any], embedder_name: str, index_dir: str | Path | None, dtype: str) -> Any:
    """Dense retriever over the chunks, reusing a saved index of the same corpus and embedder."""
    from ragft.models import model_id
    from ragft.retrieval import DenseRetriever, Embedder
    from ragft.retrieval.build import sync_index

    embedder = Embedder(embedder_name, dtype=dtype)
    index, _ = sync_index(index_dir, chunks, model_id(embedder_name), lambda: embedder)
    return DenseRetriever(embedder, index)
