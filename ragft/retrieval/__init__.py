"""Embedding, indexing and searching chunks."""

from ragft.retrieval.build import SyncStats, build_index, sync_index
from ragft.retrieval.embedder import Embedder
from ragft.retrieval.index import IndexSettings, VectorIndex
from ragft.retrieval.retriever import DenseRetriever, Retriever

__all__ = [
    "DenseRetriever",
    "Embedder",
    "Retriever",
    "IndexSettings",
    "SyncStats",
    "VectorIndex",
    "build_index",
    "sync_index",
]
