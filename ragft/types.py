"""Plain records that flow between stages. Every stage takes these and returns new ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One source document, as loaded from a corpus."""

    id: str
    text: str
    source: str
    """Where it came from: a file path, or path:line for a JSONL record."""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, the unit that is embedded and retrieved."""

    id: str
    doc_id: str
    text: str
    start: int
    """Character offset of the chunk in its document."""


@dataclass(frozen=True)
class Example:
    """One task example: a question with its gold answers."""

    id: str
    question: str
    answers: tuple[str, ...]
    split: str
    doc_id: str | None = None
    """The document that holds the answer, when known (oracle context, recall@k)."""
    group: str | None = None
    """The cluster it was sampled in, when not its document (SQuAD: its article); the
    bootstrap resamples clusters."""


@dataclass(frozen=True)
class Demo:
    """A solved example shown in a prompt, with the passages it was answered from (none
    where the pipeline retrieves nothing)."""

    question: str
    answer: str
    passages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its score and rank (0 is best)."""

    chunk: Chunk
    score: float
    rank: int


@dataclass(frozen=True)
class Generation:
    """What a generator returned for one prompt."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    """Wall time of the batch this prompt ran in, divided by the batch size."""


@dataclass(frozen=True)
class Prediction:
    """A pipeline's answer to one example, with everything needed to audit it."""

    example_id: str
    pipeline: str
    prompt: str
    output: str
    answers: tuple[str, ...]
    retrieved: tuple[str, ...]
    scores: dict[str, float]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    error: str = ""
    """Why the output is not right, where the task can tell (SQL: refused, syntax, timeout, ...)."""


def prediction_from_row(row: dict[str, Any]) -> Prediction:
    """A prediction as a predictions JSONL row holds it (its cache key dropped; rows written
    before the field was renamed name their pipeline `variant`)."""
    row = {("pipeline" if k == "variant" else k): v for k, v in row.items() if k != "fingerprint"}
    row["answers"], row["retrieved"] = tuple(row["answers"]), tuple(row["retrieved"])
    return Prediction(**row)
