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

    @property
    def shows_context(self) -> bool:
        return "{context}" in self.user

    def checked(self) -> PromptTemplate:
        """This template, after checking that its user text formats with {question} (and {context})."""
        if "{question}" not in self.user:
            raise InputError(f"template {self.name!r}: the user text needs a {{question}} placeholder")
        try:
            self.user.format(question="", context="")
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(
                f"template {self.name!r}: only {{question}} and {{context}} can be filled in ({e!r}); "
                "write other braces doubled"
            ) from None
        return self

    def messages(
        self,
        question: str,
        passages: Sequence[str] = (),
        shots: Sequence[tuple[str, str] | tuple[str, str, Sequence[str]]] = (),
    ) -> list[dict[str, str]]:
        """Chat messages: system, optional solved examples as earlier turns, the question.

        A solved example is (question, answer), shown with the question's passages, or
        (question, answer, passages), shown with its own."""
        context = _numbered(passages)
        out = [{"role": "system", "content": self.system}]
        for shot in shots:
            q, a = shot[0], shot[1]
            own = _numbered(shot[2]) if len(shot) == 3 else context
            out.append({"role": "user", "content": self.user.format(question=q, context=own)})
            out.append({"role": "assistant", "content": a})
        out.append({"role": "user", "content": self.user.format(question=question, context=context)})
        return out


def _numbered(passages: Sequence[str]) -> str:
    return "\n\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1))


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
        import difflib

        close = difflib.get_close_matches(name, TEMPLATES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown prompt template {name!r}{hint} (known: {', '.join(TEMPLATES)})") from None
