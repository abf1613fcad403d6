"""Loading documents and cutting them into chunks."""

from ragft.corpus.chunking import chunk_documents
from ragft.corpus.loaders import Corpus, load_corpus, load_folder, load_jsonl, load_squad

__all__ = ["Corpus", "chunk_documents", "load_corpus", "load_folder", "load_jsonl", "load_squad"]
