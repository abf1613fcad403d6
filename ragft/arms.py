"""The ladder's arms: what each variant shows the model and whether it trains an adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ragft.prompts import get_template
from ragft.types import Example

if TYPE_CHECKING:
    from ragft.generation import Generator

FEWSHOT = 3
"""Solved training examples shown by the `fewshot` variant."""


@dataclass(frozen=True)
class Arm:
    """How one variant builds prompts and whether it trains an adapter."""

    template: str
    context: bool
    shots: bool
    trained: bool
    oracle: bool = False
    """Context is the gold passage (or, for SQL, the solved examples closest to the gold query)
    instead of what the retriever found; only the three-way context view uses it."""

    @property
    def view(self) -> str:
        """Which context the model sees: none, oracle or retrieved."""
        return "oracle" if self.oracle else "retrieved" if self.context else "none"


ARMS = {
    "prompt": Arm("qa", context=False, shots=False, trained=False),
    "fewshot": Arm("qa", context=False, shots=True, trained=False),
    "rag": Arm("qa-context", context=True, shots=False, trained=False),
    "ft": Arm("qa", context=False, shots=False, trained=True),
    "rag+ft": Arm("qa-context", context=True, shots=False, trained=True),
}

CONTEXTS = ("none", "oracle", "retrieved")
"""The three ways a model is shown context in the three-way view."""


def with_context(arm: Arm, context: str) -> Arm:
    """The same arm (same adapter, if trained) shown no context, the oracle context or retrieved context."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r}; known: {', '.join(CONTEXTS)}")
    shown = context != "none"
    return replace(arm, template="qa-context" if shown else "qa", context=shown, oracle=context == "oracle")


def build_prompt(
    generator: Generator, arm: Arm, example: Example, passages: Sequence[str], shots: Sequence[Example]
) -> str:
    """The prompt text a variant shows the model for one example."""
    template = get_template(arm.template)
    pairs = [(s.question, s.answers[0]) for s in shots] if arm.shots else []
    return generator.render(template.messages(example.question, passages if arm.context else (), pairs))
