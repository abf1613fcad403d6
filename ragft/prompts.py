"""Named prompt templates. A template builds chat messages; the generator's own chat
template turns them into text, so the same template serves any chat model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragft.errors import InputError


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str
    """Format string with {question}, and {context} where passages are shown."""

    def messages(
        self,
        question: str,
        passages: Sequence[str] = (),
        shots: Sequence[tuple[str, str]] = (),
    ) -> list[dict[str, str]]:
        """Chat messages: system, optional solved examples as earlier turns, the question."""
        context = "\n\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1))
        out = [{"role": "system", "content": self.system}]
        for q, a in shots:
            out.append({"role": "user", "content": self.user.format(question=q, context=context)})
            out.append({"role": "assistant", "content": a})
        out.append({"role": "user", "content": self.user.format(question=question, context=context)})
        return out


TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in (
        PromptTemplate(
            "qa",
            "Answer the question with a short phrase taken from what you know. Give only the answer.",
            "Question: {question}",
        ),
        PromptTemplate(
            "qa-context",
            "Answer the question with a short phrase copied from the context. Give only the answer.",
            "Context:\n{context}\n\nQuestion: {question}",
        ),
    )
}


def get_template(name: str) -> PromptTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise InputError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATES)}") from None
