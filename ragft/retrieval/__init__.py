"""Embedding, indexing and searching chunks."""

from ragft.retrieval.embedder import Embedder
from ragft.retrieval.index import VectorIndex, build_index
from ragft.retrieval.retriever import DenseRetriever, Retriever

__all__ = ["DenseRetriever", "Embedder", "Retriever", "VectorIndex", "build_index"]
