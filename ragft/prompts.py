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
        import difflib

        close = difflib.get_close_matches(name, TEMPLATES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown prompt template {name!r}{hint} (known: {', '.join(TEMPLATES)})") from None
