"""Index kinds, incremental updates and the embedding cache (real FAISS, real embedder)."""

import numpy as np
import pytest
from helpers import HANDBOOK

from ragft.corpus import chunk_documents, load_folder
from ragft.errors import ArtifactError, ConfigError
from ragft.retrieval import IndexSettings, VectorIndex, sync_index
from ragft.retrieval.index import choose_kind
from ragft.types import Chunk, Document


def random_corpus(n=3000, dim=32, docs=300, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    vectors = centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    chunks = [Chunk(f"d{i % docs}#{i // docs}", f"d{i % docs}", f"text {i}", 0) for i in range(n)]
    return chunks, vectors


def exact_top(vectors, queries, k):
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


def recall(index, chunks, vectors, queries, k=10):
    truth = exact_top(vectors, queries, k)
    got = index.search(queries, k)
    return np.mean([len({chunks[i].id for i in t} & {c.id for c, _ in g}) / k for t, g in zip(truth, got)])


def test_auto_kind_follows_corpus_size():
    assert choose_kind("auto", 5_000) == "flat"
    assert choose_kind("auto", 500_000) == "hnsw"
    assert choose_kind("auto", 50_000_000) == "ivfpq"
    assert choose_kind("ivf", 10) == "ivf"
    with pytest.raises(ConfigError, match="hnsw"):
        choose_kind("hsnw", 10)


@pytest.mark.parametrize("kind,floor", [("flat", 1.0), ("hnsw", 0.95), ("ivf", 0.9), ("ivfpq", 0.3)])
def test_each_kind_searches_and_round_trips(tmp_path, kind, floor):
    chunks, vectors = random_corpus()
    index = VectorIndex(chunks, vectors, "emb", kind=kind, settings=IndexSettings(ef_search=64, nprobe=16))
    assert index.kind == kind
    queries = vectors[:50] + 0.05
    assert recall(index, chunks, vectors, queries) >= floor
    loaded = VectorIndex.load(index.save(tmp_path / kind), "emb")
    assert loaded.kind == kind and loaded.settings == index.settings
    assert [[c.id for c, _ in row] for row in loaded.search(queries, 5)] == [
        [c.id for c, _ in row] for row in index.search(queries, 5)
    ]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_delete_and_add_by_document_without_rebuild(tmp_path, kind):
    chunks, vectors = random_corpus()
    index = VectorIndex(chunks, vectors, "emb", kind=kind, settings=IndexSettings(nprobe=64))
    structure = index.faiss
    gone = {f"d{i}" for i in range(10)}
    assert index.delete_documents(gone) == 100
    assert index.faiss is structure  # updated in place, not rebuilt
    queries = vectors[:300]  # includes the deleted chunks' own vectors
    hits = [c for row in index.search(queries, 10) for c, _ in row]
    assert hits and not {c.doc_id for c in hits} & gone
    new = [Chunk(f"new#{i}", "new", f"new {i}", 0) for i in range(5)]
    index.add(new, -vectors[:5])
    assert [row[0][0].id for row in index.search(-vectors[:5], 1)] == [c.id for c in new]
    loaded = VectorIndex.load(index.save(tmp_path / "idx"))
    assert len(loaded) == len(chunks) - 100 + 5
    assert not {c.doc_id for row in loaded.search(queries, 10) for c, _ in row} & gone
    with pytest.raises(ValueError, match="new#0"):
        index.add(new[:1], vectors[:1])


def test_hnsw_is_rebuilt_from_stored_vectors_once_a_quarter_is_deleted():
    chunks, vectors = random_corpus()
    index = VectorIndex(chunks, vectors, "emb", kind="hnsw")
    first = index.faiss
    index.delete_documents(f"d{i}" for i in range(60))  # 20%: hidden, same graph
    assert index.faiss is first and index.faiss.ntotal == len(chunks)
    index.delete_documents(f"d{i}" for i in range(60, 90))  # 30%: compacted
    assert index.faiss is not first and index.faiss.ntotal == len(index) == 2100


def test_corrupt_or_inconsistent_files_are_refused_by_name(tmp_path):
    chunks, vectors = random_corpus(500)
    folder = VectorIndex(chunks, vectors, "emb", kind="hnsw").save(tmp_path / "idx")
    (folder / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(ArtifactError, match="index.faiss"):
        VectorIndex.load(folder)
    folder = VectorIndex(chunks, vectors, "emb").save(tmp_path / "flat")
    np.save(folder / "vectors.npy", vectors[:10])
    with pytest.raises(ArtifactError, match="vectors.npy"):
        VectorIndex.load(folder)


def _chunks():
    return chunk_documents(load_folder(HANDBOOK / "docs"))


def test_reindexing_embeds_only_changed_text(tmp_path, embedder):
    calls = []

    def counting():
        calls.append(1)
        return embedder

    chunks = _chunks()
    index, stats = sync_index(tmp_path / "idx", chunks, embedder.name, counting)
    assert (stats.embedded, stats.added, len(calls)) == (len(set(c.text for c in chunks)), len(chunks), 1)

    def refuse():
        raise AssertionError("an unchanged corpus must not load the embedder")

    again, stats = sync_index(tmp_path / "idx", chunks, embedder.name, refuse)
    assert (stats.embedded, stats.added, stats.removed, stats.reused) == (0, 0, 0, len(chunks))

    docs = load_folder(HANDBOOK / "docs")
    edited = [
        Document(d.id, d.text.replace("warden", "keeper"), d.source) if d.id == "tide-gauges" else d for d in docs
    ]
    changed = chunk_documents(edited)
    touched = [c for c in changed if c.doc_id == "tide-gauges" and "keeper" in c.text]
    index, stats = sync_index(tmp_path / "idx", changed, embedder.name, lambda: embedder)
    assert touched and stats.embedded == len(touched)
    query = embedder.embed(["Who is the gauge keeper?"])
    fresh = VectorIndex(changed, embedder.embed([c.text for c in changed]), embedder.name)
    got, want = index.search(query, 5)[0], fresh.search(query, 5)[0]
    assert [c.id for c, _ in got] == [c.id for c, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    assert VectorIndex.load(tmp_path / "idx").corpus_sha256 == fresh.corpus_sha256


def test_killed_reindex_leaves_the_previous_index_usable(tmp_path, embedder):
    """SIGKILL `ragft index` while it re-embeds a changed corpus: the old index still loads."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    docs = tmp_path / "docs"
    for copy in range(4):  # a corpus that takes a while to embed
        shutil.copytree(HANDBOOK / "docs", docs / f"copy{copy}")
    out = tmp_path / "idx"
    cmd = [sys.executable, "-m", "ragft.cli", "index", str(docs), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    before = VectorIndex.load(out, embedder.name)
    for path in docs.rglob("*.md"):  # every chunk changes, so all of it is re-embedded
        path.write_text(path.read_text() + "\n\nRevised edition.\n")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4.0)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = VectorIndex.load(out, embedder.name)
    assert after.corpus_sha256 == before.corpus_sha256
    query = embedder.embed(["Who is the gauge warden?"])
    assert [c.id for c, _ in after.search(query, 3)[0]] == [c.id for c, _ in before.search(query, 3)[0]]
