"""A ragft retriever inside a real LCEL chain, and LangChain documents coming in."""

import pytest
from helpers import HANDBOOK
from langchain_core.documents import Document as LCDocument
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from ragft.corpus import chunk_documents, load_folder
from ragft.errors import InputError
from ragft.retrieval import DenseRetriever, build_index
from ragft.retrieval.langchain import as_langchain, from_langchain


def test_lcel_chain_retrieves_and_answers_with_the_real_models(embedder, generator):
    index = build_index(chunk_documents(load_folder(HANDBOOK / "docs")), embedder)
    retriever = as_langchain(DenseRetriever(embedder, index), k=2)
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer with a short phrase copied from the context."),
            ("user", "Context:\n{context}\n\nQuestion: {question}"),
        ]
    )

    seen = []

    def generate(value):
        messages = [
            {"role": "system" if m.type == "system" else "user", "content": m.content} for m in value.to_messages()
        ]
        seen.append(generator.render(messages))
        return generator.generate(seen[-1:])[0].text

    chain = (
        {
            "context": retriever | (lambda docs: "\n\n".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | RunnableLambda(generate)
    )
    docs = retriever.invoke("Who is the gauge warden?")
    assert docs[0].metadata["doc_id"] == "tide-gauges" and "Lorcan Dyre" in docs[0].page_content
    answer = chain.invoke("Who is the gauge warden?")
    assert isinstance(answer, str) and answer
    assert "The gauge warden, Lorcan Dyre" in seen[0] and seen[0].endswith("<|im_start|>assistant\n")


def test_langchain_documents_come_in_with_stable_ids():
    docs = from_langchain(
        [
            LCDocument(page_content="a", metadata={"source": "x.pdf"}),
            LCDocument(page_content="b", metadata={"source": "x.pdf"}),
            LCDocument(page_content="c", id="given"),
        ]
    )
    assert [d.id for d in docs] == ["x.pdf", "x.pdf#1", "given"]
    with pytest.raises(InputError, match="duplicate document id 'k': from a.txt \\(item 0\\) and from b.txt"):
        from_langchain(
            [
                LCDocument(page_content="1", metadata={"id": "k", "source": "a.txt"}),
                LCDocument(page_content="2", metadata={"id": "k", "source": "b.txt"}),
            ]
        )
