"""Cutting documents into overlapping chunks whose ids map back to their documents.

Sizes count characters, or the embedder's own tokens (`unit="tokens"`), so that no chunk
is silently cut short by the embedder's sequence limit (256 tokens for MiniLM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ragft.errors import ConfigError
from ragft.types import Chunk, Document

UNITS = ("characters", "tokens")


def chunk_documents(
    docs: Sequence[Document],
    chunk_size: int = 500,
    chunk_overlap: int = 50,
    tokenizer: Any = None,
) -> list[Chunk]:
    """Recursive splitting (paragraphs, then lines, sentences, words); sizes in tokens of
    `tokenizer` when one is given, else in characters.

    Chunk ids are `doc_id#n`; `start` is the chunk's character offset in its document.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    length: Callable[[str], int] = len if tokenizer is None else (lambda text: len(tokenizer.tokenize(text)))
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        length_function=length,
        separators=["\n\n", "\n", ". ", " ", ""],
        keep_separator="end",
    )
    chunks: list[Chunk] = []
    for doc in docs:
        first = len(chunks)
        previous = -1
        for piece in splitter.split_text(doc.text):
            text = piece.strip()
            if not text:
                continue
            # Pieces come in document order, so each starts after the one before.
            start = doc.text.find(text, previous + 1)
            previous = start = start if start >= 0 else doc.text.find(text)
            chunks.append(Chunk(id=f"{doc.id}#{len(chunks) - first}", doc_id=doc.id, text=text, start=start))
    return chunks


def chunk_for_embedder(
    docs: Sequence[Document], embedder: str, unit: str, chunk_size: int, chunk_overlap: int
) -> list[Chunk]:
    """Chunk by characters, or by the tokens of `embedder` (refusing sizes past its limit)."""
    if unit not in UNITS:
        raise ConfigError(f"chunking.unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if unit == "characters":
        return chunk_documents(docs, chunk_size, chunk_overlap)
    from ragft.retrieval.embedder import embedder_tokenizer

    tokenizer, limit = embedder_tokenizer(embedder)
    if chunk_size > limit:
        raise ConfigError(
            f"chunking.chunk_size {chunk_size} tokens is past the embedder's limit of {limit} text tokens; "
            f"chunks would be truncated when embedded"
        )
    return chunk_documents(docs, chunk_size, chunk_overlap, tokenizer)
