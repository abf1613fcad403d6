"""Cutting documents into overlapping chunks whose ids map back to their documents."""

from __future__ import annotations

from collections.abc import Sequence

from ragft.types import Chunk, Document


def chunk_documents(docs: Sequence[Document], chunk_size: int = 500, chunk_overlap: int = 50) -> list[Chunk]:
    """Recursive character splitting (paragraphs, then lines, sentences, words).

    Chunk ids are `doc_id#n`; `start` is the chunk's character offset in its document.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
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
