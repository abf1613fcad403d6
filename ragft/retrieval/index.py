"""FAISS vector index over chunks, saved as a folder with a manifest checked on load.

Kinds: exact `flat` search, `hnsw` graphs and `ivf` / `ivfpq` inverted lists; `auto`
picks by size (exact below `HNSW_FROM` vectors, HNSW up to `IVFPQ_FROM`, compressed
IVF-PQ above). Every vector has a stable int64 id, so chunks can be added and deleted
without a rebuild (HNSW, which cannot remove, hides deleted ids at search time and is
rebuilt from the stored vectors once a quarter of it is deleted).

Layout: `vectors.npy` (float32 unit vectors, in `chunks.jsonl` order, the embedding
cache), `chunks.jsonl` (chunk records with their vector id), `index.faiss` (graph or
lists; flat indexes are rebuilt from the vectors), `manifest.json`, written last.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragft.errors import ArtifactError, ConfigError
from ragft.io import atomic_dir, library_versions, read_jsonl, read_manifest, sha256_bytes, sha256_json, write_manifest
from ragft.types import Chunk

KIND = "vector-index"
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
HNSW_FROM = 100_000
"""`auto` switches from exact search to HNSW at this many vectors."""
IVFPQ_FROM = 5_000_000
"""`auto` switches to compressed IVF-PQ (32x smaller) at this many vectors."""
COMPACT_AT = 0.25
"""Rebuild an HNSW graph once this fraction of its nodes is deleted."""


def corpus_hash(chunks: Iterable[Chunk]) -> str:
    """Content hash of a set of chunk records: equal hashes mean equal searchable content."""
    return sha256_json(sorted([c.id, c.doc_id, c.start, c.text] for c in chunks))


def text_key(text: str) -> str:
    """Embedding-cache key of a text."""
    return sha256_bytes(text.encode("utf-8"))


def choose_kind(kind: str, n: int) -> str:
    """The concrete index kind for `n` vectors (`auto` resolved by size)."""
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if n < HNSW_FROM else "hnsw" if n < IVFPQ_FROM else "ivfpq"


@dataclass(frozen=True)
class IndexSettings:
    """Speed/recall knobs of approximate indexes (ignored by flat ones)."""

    hnsw_m: int = 32
    """HNSW graph neighbours per node."""
    ef_construction: int = 200
    """HNSW candidate list while building the graph: higher builds slower, searches better."""
    ef_search: int = 1024
    """HNSW candidate list at search time (raised to k when k is larger)."""
    nprobe: int = 32
    """Inverted lists scanned per query by IVF indexes."""


class VectorIndex:
    """Inner-product search over unit vectors (cosine similarity), updatable by chunk or document id."""

    def __init__(
        self,
        chunks: Sequence[Chunk],
        vectors: Any,
        embedder: str,
        meta: dict[str, Any] | None = None,
        kind: str = "auto",
        settings: IndexSettings | None = None,
    ):
        import numpy as np

        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        _check_unique(chunks)
        self.embedder = embedder
        self.dim = int(vectors.shape[1])
        self.meta = dict(meta or {})
        self.requested = kind
        self.settings = settings or IndexSettings()
        self.chunks = list(chunks)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.vids = np.arange(len(self.chunks), dtype=np.int64)
        self.next_vid = len(self.chunks)
        self._hidden: set[int] = set()
        self._rebuild(choose_kind(kind, len(self.chunks)))

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def corpus_sha256(self) -> str:
        if self._digest is None:
            self._digest = corpus_hash(self.chunks)
        return self._digest

    def search(self, queries: Any, k: int) -> list[list[tuple[Chunk, float]]]:
        """For each query vector, the k best chunks with their scores, best first."""
        import faiss

        k = min(k, len(self.chunks))
        if k == 0:
            return [[] for _ in range(len(queries))]
        params = None
        selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(sorted(self._hidden))) if self._hidden else None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.settings.ef_search, k), sel=selector)
        elif self.kind in ("ivf", "ivfpq"):
            params = faiss.SearchParametersIVF(nprobe=self.settings.nprobe)
        scores, ids = self.faiss.search(queries, k, params=params)
        return [
            [(self.chunks[self._pos[int(i)]], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
            for row_ids, row_scores in zip(ids, scores)
        ]

    def add(self, chunks: Sequence[Chunk], vectors: Any) -> None:
        """Add chunks with their vectors; a chunk id already in the index is an error."""
        import numpy as np

        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        _check_unique([*self.chunks, *chunks])
        if not chunks:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        vids = np.arange(self.next_vid, self.next_vid + len(chunks), dtype=np.int64)
        self.next_vid += len(chunks)
        self.chunks.extend(chunks)
        self.vectors = np.concatenate([self.vectors, vectors])
        self.vids = np.concatenate([self.vids, vids])
        if choose_kind(self.requested, len(self.chunks)) != self.kind:
            self._rebuild(choose_kind(self.requested, len(self.chunks)))
            return
        self.faiss.add_with_ids(vectors, vids)
        self._reindex()

    def delete(self, chunk_ids: Iterable[str]) -> int:
        """Delete chunks by id; returns how many were in the index."""
        import numpy as np

        wanted = set(chunk_ids)
        drop = [i for i, c in enumerate(self.chunks) if c.id in wanted]
        if not drop:
            return 0
        vids = self.vids[drop]
        if self.kind == "hnsw":
            self._hidden.update(int(v) for v in vids)
        else:
            self.faiss.remove_ids(vids)
        keep = np.ones(len(self.chunks), dtype=bool)
        keep[drop] = False
        self.chunks = [c for c, k in zip(self.chunks, keep) if k]
        self.vectors, self.vids = self.vectors[keep], self.vids[keep]
        wanted_kind = choose_kind(self.requested, len(self.chunks))
        if wanted_kind != self.kind or len(self._hidden) > COMPACT_AT * max(self.faiss.ntotal, 1):
            self._rebuild(wanted_kind)
        else:
            self._reindex()
        return len(drop)

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Delete every chunk of these documents; returns how many chunks went."""
        docs = set(doc_ids)
        return self.delete(c.id for c in self.chunks if c.doc_id in docs)

    def cached_vectors(self) -> dict[str, Any]:
        """Text hash -> stored vector: what re-indexing may reuse instead of embedding."""
        return {text_key(c.text): v for c, v in zip(self.chunks, self.vectors)}

    def rebuild(self, kind: str | None = None, settings: IndexSettings | None = None) -> None:
        """Rebuild the FAISS structure from the stored vectors (no embedding)."""
        if kind is not None:
            self.requested = kind
        if settings is not None:
            self.settings = settings
        self._rebuild(choose_kind(self.requested, len(self.chunks)))

    def _rebuild(self, kind: str) -> None:
        self.kind = kind
        self._hidden = set()
        self.faiss = _make_faiss(kind, self.dim, self.vectors, self.settings)
        if len(self.chunks):
            self.faiss.add_with_ids(self.vectors, self.vids)
        self._reindex()

    def _reindex(self) -> None:
        self._pos = {int(v): i for i, v in enumerate(self.vids)}
        self._digest: str | None = None

    def save(self, folder: str | Path) -> Path:
        """Write the index folder atomically; an interrupted save leaves the old one intact."""
        import faiss
        import numpy as np

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            np.save(tmp / "vectors.npy", self.vectors, allow_pickle=False)
            if self.kind != "flat":
                faiss.write_index(self.faiss, str(tmp / "index.faiss"))
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
                for c, vid in zip(self.chunks, self.vids):
                    f.write(json.dumps({"vid": int(vid), **asdict(c)}, ensure_ascii=False) + "\n")
            write_manifest(
                tmp,
                {
                    "kind": KIND,
                    "embedder": self.embedder,
                    "dim": self.dim,
                    "count": len(self.chunks),
                    "corpus_sha256": self.corpus_sha256,
                    "index": self.kind,
                    "requested": self.requested,
                    "settings": asdict(self.settings),
                    "next_vid": self.next_vid,
                    "hidden": sorted(self._hidden),
                    **self.meta,
                    "versions": library_versions("faiss-cpu", "sentence-transformers", "langchain-text-splitters"),
                },
            )
        return folder

    @classmethod
    def load(cls, folder: str | Path, embedder: str | None = None) -> VectorIndex:
        """Load a saved index; with `embedder`, refuse an index built by another one."""
        import faiss
        import numpy as np

        folder = Path(folder)
        manifest = read_manifest(folder, KIND)
        if embedder is not None and manifest["embedder"] != embedder:
            raise ArtifactError(
                f"{folder}: index was built with embedder {manifest['embedder']!r}, "
                f"but the query embedder is {embedder!r}; rebuild it with `ragft index`"
            )
        if not (folder / "vectors.npy").is_file():
            raise ArtifactError(f"{folder}: index from an older ragft (no vectors.npy); rebuild it with `ragft index`")
        rows = [row for _, row in read_jsonl(folder / "chunks.jsonl")]
        vids = np.array([row.pop("vid") for row in rows], dtype=np.int64)
        chunks = [Chunk(**row) for row in rows]
        try:
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ArtifactError(f"{folder / 'vectors.npy'}: unreadable vectors ({e})") from None
        if vectors.shape != (len(chunks), manifest["dim"]) or manifest["count"] != len(chunks):
            raise ArtifactError(
                f"{folder}: vectors.npy holds {vectors.shape}, manifest says {manifest['count']} of "
                f"dimension {manifest['dim']}, chunks.jsonl has {len(chunks)} rows"
            )
        digest = corpus_hash(chunks)
        if digest != manifest["corpus_sha256"]:
            raise ArtifactError(f"{folder}: chunks.jsonl does not match the manifest's corpus hash")
        index = cls.__new__(cls)
        index.chunks, index.vectors, index.vids = chunks, np.ascontiguousarray(vectors, dtype=np.float32), vids
        index.embedder, index.dim = manifest["embedder"], int(manifest["dim"])
        index.requested, index.next_vid = manifest["requested"], int(manifest["next_vid"])
        index.settings = IndexSettings(**manifest["settings"])
        index.meta = {k: v for k, v in manifest.items() if k not in _MANIFEST_KEYS}
        if manifest["index"] == "flat":
            index._rebuild("flat")
        else:
            try:
                raw = faiss.read_index(str(folder / "index.faiss"))
            except RuntimeError as e:
                raise ArtifactError(f"{folder / 'index.faiss'}: unreadable FAISS index ({e})") from None
            hidden = set(manifest["hidden"])
            if raw.ntotal != len(chunks) + len(hidden) or raw.d != index.dim:
                raise ArtifactError(
                    f"{folder / 'index.faiss'}: holds {raw.ntotal} vectors of dimension {raw.d}, "
                    f"expected {len(chunks) + len(hidden)} of {index.dim}"
                )
            index.kind, index.faiss, index._hidden = manifest["index"], raw, hidden
            index._reindex()
        index._digest = digest
        return index


_MANIFEST_KEYS = {"kind", "versions", "corpus_sha256", "embedder", "dim", "count", "index", "requested"}
_MANIFEST_KEYS |= {"settings", "next_vid", "hidden"}


def _check_unique(chunks: Sequence[Chunk]) -> None:
    seen: set[str] = set()
    for c in chunks:
        if c.id in seen:
            raise ValueError(f"chunk id {c.id!r} occurs twice")
        seen.add(c.id)


def _make_faiss(kind: str, dim: int, vectors: Any, settings: IndexSettings) -> Any:
    """An empty id-mapped FAISS index of this kind, trained on `vectors` where it needs training."""
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    n = len(vectors)
    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, settings.hnsw_m, ip)
        base.hnsw.efConstruction = settings.ef_construction
    else:
        if n == 0:
            raise ValueError(f"an {kind} index needs vectors to train on")
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            base = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
        else:
            m = max(d for d in range(1, dim // 8 + 1) if dim % d == 0)
            bits = max(1, min(8, int(math.log2(max(n // 39, 2)))))
            base = faiss.IndexIVFPQ(quantizer, dim, nlist, m, bits, ip)
        base.train(vectors)
    return faiss.IndexIDMap2(base)  # faiss's wrappers keep `base` and `quantizer` alive
