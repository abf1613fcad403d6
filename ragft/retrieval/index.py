"""FAISS vector index over chunks, saved as a folder with a manifest checked on load.

Layout: `index.faiss` (vectors), `chunks.jsonl` (the chunk records, in vector order),
`manifest.json` (embedder id, dimension, corpus hash, library versions), written last.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ArtifactError
from ragft.io import (
    atomic_dir,
    library_versions,
    read_jsonl,
    read_manifest,
    sha256_json,
    write_manifest,
)
from ragft.types import Chunk

if TYPE_CHECKING:
    from ragft.retrieval.embedder import Embedder

KIND = "vector-index"


def corpus_hash(chunks: Sequence[Chunk]) -> str:
    """Content hash of the chunk records: equal hashes mean equal searchable content."""
    return sha256_json([[c.id, c.doc_id, c.start, c.text] for c in chunks])


class VectorIndex:
    """Exact inner-product search over unit vectors (cosine similarity)."""

    def __init__(self, chunks: Sequence[Chunk], vectors: Any, embedder: str, meta: dict[str, Any] | None = None):
        import faiss

        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        self.chunks = list(chunks)
        self.embedder = embedder
        self.dim = int(vectors.shape[1])
        self.meta = dict(meta or {})
        self.corpus_sha256 = corpus_hash(self.chunks)
        self.faiss = faiss.IndexFlatIP(self.dim)
        self.faiss.add(vectors)

    def __len__(self) -> int:
        return len(self.chunks)

    def search(self, queries: Any, k: int) -> list[list[tuple[Chunk, float]]]:
        """For each query vector, the k best chunks with their scores, best first."""
        k = min(k, len(self.chunks))
        scores, ids = self.faiss.search(queries, k)
        return [
            [(self.chunks[i], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(ids, scores)
        ]

    def save(self, folder: str | Path) -> Path:
        """Write the index folder atomically; an interrupted save leaves the old one intact."""
        import faiss

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            faiss.write_index(self.faiss, str(tmp / "index.faiss"))
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
                for c in self.chunks:
                    f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
            write_manifest(
                tmp,
                {
                    "kind": KIND,
                    "embedder": self.embedder,
                    "dim": self.dim,
                    "count": len(self.chunks),
                    "corpus_sha256": self.corpus_sha256,
                    "faiss_index": "IndexFlatIP",
                    **self.meta,
                    "versions": library_versions("faiss-cpu", "sentence-transformers", "langchain-text-splitters"),
                },
            )
        return folder

    @classmethod
    def load(cls, folder: str | Path, embedder: str | None = None) -> VectorIndex:
        """Load a saved index; with `embedder`, refuse an index built by another one."""
        import faiss

        folder = Path(folder)
        manifest = read_manifest(folder, KIND)
        if embedder is not None and manifest["embedder"] != embedder:
            raise ArtifactError(
                f"{folder}: index was built with embedder {manifest['embedder']!r}, "
                f"but the query embedder is {embedder!r}; rebuild it with `ragft index`"
            )
        chunks = [Chunk(**row) for _, row in read_jsonl(folder / "chunks.jsonl")]
        try:
            raw = faiss.read_index(str(folder / "index.faiss"))
        except RuntimeError as e:
            raise ArtifactError(f"{folder / 'index.faiss'}: unreadable FAISS index ({e})") from None
        if raw.ntotal != len(chunks) or raw.d != manifest["dim"] or manifest["count"] != len(chunks):
            raise ArtifactError(
                f"{folder}: index holds {raw.ntotal} vectors of dimension {raw.d}, manifest says "
                f"{manifest['count']} of {manifest['dim']}, chunks.jsonl has {len(chunks)}"
            )
        digest = corpus_hash(chunks)
        if digest != manifest["corpus_sha256"]:
            raise ArtifactError(f"{folder}: chunks.jsonl does not match the manifest's corpus hash")
        index = cls.__new__(cls)
        index.chunks, index.embedder, index.dim, index.faiss = chunks, manifest["embedder"], raw.d, raw
        index.corpus_sha256 = digest
        index.meta = {k: v for k, v in manifest.items() if k not in ("kind", "versions", "corpus_sha256")}
        return index


def build_index(chunks: Sequence[Chunk], embedder: Embedder, meta: dict[str, Any] | None = None) -> VectorIndex:
    """Embed the chunks (with a progress bar) and index them."""
    vectors = embedder.embed([c.text for c in chunks], progress=len(chunks) > 256)
    return VectorIndex(chunks, vectors, embedder.name, meta)


def load_or_build_index(
    folder: str | Path | None,
    chunks: Sequence[Chunk],
    embedder_id: str,
    embedder: Callable[[], Embedder],
    meta: dict[str, Any] | None = None,
) -> VectorIndex:
    """The index saved in `folder` when it holds exactly these chunks from this embedder;
    otherwise build one (calling `embedder()` only then) and save it there."""
    if folder is not None:
        try:
            index = VectorIndex.load(folder, embedder_id)
            if index.corpus_sha256 == corpus_hash(chunks):
                return index
        except ArtifactError:
            pass
    index = build_index(chunks, embedder(), meta)
    if folder is not None:
        index.save(folder)
    return index
