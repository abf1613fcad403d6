"""Retrieval speed, measured side by side in one process; prints ratios, not verdicts.

embedding: ragft's Embedder against a bare SentenceTransformer.encode on the same texts and
           batch size (the toolkit's overhead), then bf16 against fp32 (speed and cosine).
search:    exact flat search over 100k vectors against the memory-bandwidth floor
           (bytes scanned / measured copy bandwidth).
hnsw:      HNSW against flat at 1M vectors: recall@10 and queries/s.

Texts are SciFact passages from ../shared/data (or $RAGFT_DATA) when present, else the
bundled handbook. Vectors for search and hnsw are synthetic unit vectors with a
low-dimensional cluster structure like real embeddings (no embedder could make 1M here).

Run: .venv/bin/python benchmarks/retrieval_speed.py [embedding|search|hnsw ...] [--hnsw-n 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def texts(n: int) -> list[str]:
    data = Path(os.environ.get("RAGFT_DATA") or ROOT.parent / "shared" / "data") / "scifact"
    if data.is_dir():
        from ragft.tasks.beir import load_beir

        docs = load_beir(data).documents
    else:
        from ragft.corpus import chunk_documents, load_folder

        docs = chunk_documents(load_folder(ROOT / "corpora" / "handbook" / "docs"))
    out = [d.text for d in docs]
    return (out * (n // len(out) + 1))[:n]


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def embedding(n: int, batch_size: int, repeats: int) -> None:
    from sentence_transformers import SentenceTransformer

    from ragft.models import resolve
    from ragft.retrieval import Embedder

    sample = texts(n)
    bare = SentenceTransformer(resolve("all-minilm-l6-v2", "embedder"), device="cpu")
    ours = Embedder("all-minilm-l6-v2", batch_size=batch_size)

    def encode_bare():
        return bare.encode(sample, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)

    encode_bare()  # warm-up
    # Interleave the two so machine noise hits both alike.
    t_bare, t_ours = [], []
    for _ in range(repeats):
        t_bare.append(timed(encode_bare, 1))
        t_ours.append(timed(lambda: ours.embed(sample), 1))
    bare_s, ours_s = statistics.median(t_bare), statistics.median(t_ours)
    print(f"embedding {n} passages, batch {batch_size}, median of {repeats}:")
    print(f"  bare SentenceTransformer.encode  {n / bare_s:8.1f} passages/s")
    print(f"  ragft Embedder.embed             {n / ours_s:8.1f} passages/s")
    print(f"  ragft / bare time: {ours_s / bare_s:.3f} (overhead {100 * (ours_s / bare_s - 1):+.1f}%)")

    fp32 = ours.embed(sample)
    bf16 = Embedder("all-minilm-l6-v2", batch_size=batch_size, dtype="bfloat16")
    bf16.embed(sample[:batch_size])  # warm-up
    t32 = timed(lambda: ours.embed(sample), repeats)
    t16 = timed(lambda: bf16.embed(sample), repeats)
    cosine = np.sum(fp32 * bf16.embed(sample), axis=1)
    print(f"  fp32 {n / t32:8.1f} passages/s, bf16 {n / t16:8.1f} passages/s: bf16 speed-up {t32 / t16:.2f}x")
    print(f"  cosine(bf16, fp32): mean {cosine.mean():.5f}, min {cosine.min():.5f}")


def synthetic(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Unit vectors on a noisy 32-dimensional subspace with 1,000 clusters."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(32, dim)).astype(np.float32)
    centres = rng.normal(size=(1000, 32)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        latent = centres[rng.integers(0, 1000, m)] + 0.5 * rng.normal(size=(m, 32)).astype(np.float32)
        block = latent @ basis + 0.3 * rng.normal(size=(m, dim)).astype(np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def chunks_for(n: int) -> list:
    from ragft.types import Chunk

    return [Chunk(str(i), str(i), "", 0) for i in range(n)]


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s of a plain memory copy of `nbytes` (read + write counted as the bytes read)."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return nbytes / timed(lambda: np.copyto(dst, src), repeats)


def search(n: int, queries: int, repeats: int) -> None:
    import faiss

    from ragft.retrieval import VectorIndex

    vectors = synthetic(n)
    index = VectorIndex(chunks_for(n), vectors, "synthetic", kind="flat")
    q = synthetic(queries, seed=1)
    per_query = timed(lambda: [index.search(q[i : i + 1], 10) for i in range(queries)], repeats) / queries
    bandwidth = copy_bandwidth(vectors.nbytes, repeats * 3)
    floor = vectors.nbytes / bandwidth
    print(f"flat search over {n} x {vectors.shape[1]} float32 ({vectors.nbytes / 1e6:.0f} MB), one query at a time:")
    print(f"  copy bandwidth {bandwidth / 1e9:.2f} GB/s -> floor {1e3 * floor:.2f} ms/query")
    print(f"  measured {1e3 * per_query:.2f} ms/query ({faiss.omp_get_max_threads()} threads)")
    print(f"  measured / floor: {per_query / floor:.2f}x")


def hnsw(n: int, queries: int, m: int, ef_construction: int) -> None:
    from ragft.retrieval import IndexSettings, VectorIndex

    vectors = synthetic(n)
    q = synthetic(queries, seed=1)
    chunks = chunks_for(n)
    flat = VectorIndex(chunks, vectors, "synthetic", kind="flat")
    start = time.perf_counter()
    exact = flat.search(q, 10)
    flat_s = (time.perf_counter() - start) / queries
    start = time.perf_counter()
    settings = IndexSettings(hnsw_m=m, ef_construction=ef_construction)
    graph = VectorIndex(chunks, vectors, "synthetic", kind="hnsw", settings=settings)
    build = time.perf_counter() - start
    print(f"HNSW over {n} x {vectors.shape[1]} (M={m}, efConstruction={ef_construction}) built in {build:.0f} s")
    print(f"  flat: {1e3 * flat_s:.2f} ms/query (batched, {queries} queries)")
    for ef in (64, 128, 256, 512, 1024):
        graph.settings = IndexSettings(m, ef_construction, ef_search=ef)
        start = time.perf_counter()
        got = graph.search(q, 10)
        seconds = (time.perf_counter() - start) / queries
        recall = np.mean([len({c.id for c, _ in a} & {c.id for c, _ in b}) / 10 for a, b in zip(got, exact)])
        print(f"  efSearch {ef:3}: recall@10 {recall:.3f}, {1e3 * seconds:.3f} ms/query, {flat_s / seconds:6.1f}x flat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["embedding", "search", "hnsw"])
    parser.add_argument("--texts", type=int, default=1024, help="passages embedded")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flat-n", type=int, default=100_000)
    parser.add_argument("--hnsw-n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    args = parser.parse_args()
    if "embedding" in args.parts:
        embedding(args.texts, args.batch_size, args.repeats)
    if "search" in args.parts:
        search(args.flat_n, args.queries, args.repeats)
    if "hnsw" in args.parts:
        hnsw(args.hnsw_n, args.queries, args.hnsw_m, args.ef_construction)


if __name__ == "__main__":
    main()
