"""The ladder's arms: what each variant shows the model and whether it trains an adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


ARMS = {
    "prompt": Arm("qa", context=False, shots=False, trained=False),
    "fewshot": Arm("qa", context=False, shots=True, trained=False),
    "rag": Arm("qa-context", context=True, shots=False, trained=False),
    "ft": Arm("qa", context=False, shots=False, trained=True),
    "rag+ft": Arm("qa-context", context=True, shots=False, trained=True),
}


def build_prompt(
    generator: Generator, arm: Arm, example: Example, passages: Sequence[str], shots: Sequence[Example]
) -> str:
    """The prompt text a variant shows the model for one example."""
    template = get_template(arm.template)
    pairs = [(s.question, s.answers[0]) for s in shots] if arm.shots else []
    return generator.render(template.messages(example.question, passages if arm.context else (), pairs))
