"""LangChain interop: a ragft retriever as a LangChain `BaseRetriever`, and LangChain
`Document` lists as ragft Documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from ragft.errors import InputError
from ragft.retrieval.retriever import Retriever
from ragft.types import Document


class RagftRetriever(BaseRetriever):
    """Wraps any ragft retriever (dense, BM25, hybrid) for LCEL chains."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any
    """The ragft retriever: anything with `retrieve(queries, k) -> list[list[Hit]]`."""
    k: int = 4
    """Passages returned per query."""

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        (hits,) = self.retriever.retrieve([query], self.k)
        return [
            LCDocument(
                page_content=h.chunk.text,
                metadata={"chunk_id": h.chunk.id, "doc_id": h.chunk.doc_id, "score": h.score, "rank": h.rank},
            )
            for h in hits
        ]


def as_langchain(retriever: Retriever, k: int = 4) -> RagftRetriever:
    return RagftRetriever(retriever=retriever, k=k)


def from_langchain(docs: Sequence[LCDocument]) -> list[Document]:
    """ragft Documents from LangChain ones; the id is `doc.id`, else metadata 'id', else
    'source' (with '#n' for the n-th piece of one source). Duplicate ids are an error."""
    out, seen, pieces = [], {}, {}
    for n, doc in enumerate(docs):
        source = str(doc.metadata.get("source", f"document {n}"))
        doc_id = doc.id or doc.metadata.get("id")
        if doc_id is None:
            pieces[source] = pieces.get(source, -1) + 1
            doc_id = source if pieces[source] == 0 else f"{source}#{pieces[source]}"
        doc_id = str(doc_id)
        if doc_id in seen:
            raise InputError(f"duplicate document id {doc_id!r}: from {seen[doc_id]} and from {source} (item {n})")
        seen[doc_id] = f"{source} (item {n})"
        out.append(Document(doc_id, doc.page_content, source, dict(doc.metadata)))
    return out
