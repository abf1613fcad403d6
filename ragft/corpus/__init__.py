"""Loading documents and cutting them into chunks."""

from ragft.corpus.chunking import chunk_documents
from ragft.corpus.loaders import load_folder

__all__ = ["chunk_documents", "load_folder"]
