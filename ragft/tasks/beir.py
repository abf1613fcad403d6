"""BEIR-layout retrieval data: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ragft.corpus.loaders import BEIR, load_jsonl
from ragft.errors import InputError
from ragft.io import read_jsonl
from ragft.types import Document

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeirData:
    documents: list[Document]
    queries: dict[str, str]
    """Query id to text, only the queries that have judgements in the split."""
    qrels: dict[str, dict[str, int]]
    """Query id to {document id: relevance}."""
    unknown: list[str] = field(default_factory=list)
    """qrels rows (file:line) that point at a document or query id the data does not have."""


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise InputError(f"no {name} or {name}.gz (BEIR layout expected)", folder)


def load_beir(folder: str | Path, split: str = "test") -> BeirData:
    """Load a BEIR folder. Document text is `title text`, as BEIR and MTEB embed it."""
    folder = Path(folder)
    docs = load_jsonl(_find(folder, "corpus.jsonl"), BEIR).documents
    seen = {d.id for d in docs}
    queries_path = _find(folder, "queries.jsonl")
    all_queries = {str(row["_id"]): row["text"] for _, row in read_jsonl(queries_path)}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise InputError(f"no qrels for split {split!r}", qrels_path)
    qrels: dict[str, dict[str, int]] = {}
    unknown = []
    for number, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split("\t")
        if number == 1 and parts[0] == "query-id" or not line.strip():
            continue
        if len(parts) != 3:
            raise InputError("expected 3 tab-separated columns: query-id, corpus-id, score", qrels_path, number)
        qid, did, rel = parts
        if did not in seen or qid not in all_queries:
            unknown.append(f"{qrels_path}:{number}")
            continue
        qrels.setdefault(qid, {})[did] = int(rel)
    if unknown:
        log.warning("%d qrels rows point at unknown ids, first: %s", len(unknown), unknown[0])
    queries = {q: all_queries[q] for q in qrels}
    return BeirData(docs, queries, qrels, unknown)
